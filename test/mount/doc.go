// Package mount holds the real-mount tests of the restore browser (package
// fs): TestMain builds the cairn binary, each test runs `cairn mount` as a
// child process and reads the mounted tree from the test process with Go
// and real tools (cmp, qemu-img, e2fsck), the way users do. Serving and
// reading from separate processes also avoids the deadlocks go-fuse
// documents for a process that reads its own mount.
//
// The tests need /dev/fuse and fusermount3 (Debian package fuse3), and
// sfdisk, mkfs.ext4, e2fsck and qemu-img. Without them they skip, unless
// CI=true or CAIRN_REQUIRE_TOOLS=1 is set: then they fail.
//
//	go test ./test/mount/ -count=1
//
// TestBenchMount measures throughput and latency with a large image; it
// only runs when CAIRN_BENCH_IMAGE is set (see its comment).
package mount
