// Package ingest moves disk bytes between disk images and the repository:
// Backup reads images (raw files, block devices, qcow2 with backing chains,
// through package source), cuts them into blocks, skips holes and zero
// blocks, deduplicates against the repository and the VM's previous restore
// point, and commits one restore point per VM; RestoreDisk writes a disk of
// a restore point back to a sparse raw file, a block device or a qcow2 image.
//
// Both run as errgroup pipelines: one producer walks the allocation map in
// disk order, workers (two per CPU) read, hash, compress and store (or read,
// verify and write) batches of 16 blocks, and for backups a finalizer stores
// each block table once all its blocks are done. Memory is bounded by the
// number of batches in flight, not by the disk size.
//
// Sources are read around the page cache (package internal/pagecache):
// what the backup brings in is dropped as soon as it is copied out, and
// what other users had cached stays, so backing up a multi-TiB disk does
// not evict the host's working set.
package ingest
