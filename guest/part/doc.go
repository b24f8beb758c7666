// Package part reads the partition table of a guest disk: GPT (512-byte
// and 4096-byte sectors, falling back to the backup header) and MBR with
// logical partitions in an extended partition, numbered as Linux numbers
// them. go-diskfs parses the structures; this package first checks every
// count and size a header asks for, and checks every partition against the
// disk, so a crafted table gives an error wrapping ErrMalformed (and so
// vfs.ErrMalformed), never a huge allocation, a loop or a partition
// outside the disk.
package part
