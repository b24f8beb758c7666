// Package fstest is the test support shared by the guest file-system
// readers' tests (guest/ext, guest/xfs, guest/fat, guest/ntfs, guest/lvm).
// Only _test.go files import it; it is not part of any reader.
//
// It owns:
//
//   - seed images: reading the gzipped images under a package's testdata
//     (Seed, Seeds);
//   - the sector fuzz-input format: an image as its non-zero 512-byte
//     sectors, each prefixed by its little-endian uint32 sector number
//     (EncodeSectors, DecodeSectors), and Volume, the sparse zero-filled
//     io.ReaderAt those inputs and the trimmed seeds are read through,
//     grown to the size the file system's header gives (Layout);
//   - bounded walks of a possibly hostile vfs.FS, sequential and from
//     several goroutines at once (Walk, CheckConcurrentWalks);
//   - external tools: requiring them (skip, or fail when CI=true or
//     CAIRN_REQUIRE_TOOLS=1) and running them (RequireTools, Unavailable,
//     Run, RunEnv);
//   - small helpers for building and opening test images (RandBytes, SHA,
//     WriteFile, OpenImage, Must) and the reader-versus-raw read benchmark
//     (ReadRatio).
//
// It holds no package-level state: every helper takes what it works on.
package fstest
