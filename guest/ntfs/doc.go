// Package ntfs reads NTFS volumes in Go, read-only, through an
// io.ReaderAt, and serves them as a vfs.FS (type "ntfs").
//
// Vocabulary: the boot sector locates the master file table ($MFT); every
// file is a base MFT record (plus extension records named by an
// $ATTRIBUTE_LIST) holding attributes — $STANDARD_INFORMATION (times,
// DOS attributes), one $FILE_NAME per name, the unnamed $DATA (resident in
// the record or non-resident: a run list mapping virtual clusters to
// logical clusters, with holes), a directory's $I30 B-tree ($INDEX_ROOT in
// the record, $INDEX_ALLOCATION blocks "INDX" outside), $REPARSE_POINT.
// MFT and index records are protected by update sequence arrays, checked
// and undone on every read.
//
// Why not a library: www.velocidex.com/golang/go-ntfs (Velociraptor's
// forensic reader) was evaluated and not used. It hard-codes 4 KiB index
// records, reads a run without an LCN as data unless the attribute is
// flagged sparse, decompresses a whole compression unit per ReadAt with a
// byte-by-byte copy, lists directories by scanning every index block
// (slack included) instead of walking the B-tree, and swallows errors
// (ListDir skips entries it cannot read) where cairn must report them; it
// would also pull eight modules into go.mod. What cairn needs is the
// small, checked subset below.
//
// Semantics (the ntfs-3g view, which the tests compare against):
//
//   - Inode numbers are MFT record numbers; the root is 5. Hard links are
//     several $FILE_NAME attributes in one record: the same inode under
//     several names; Nlink counts the names, a DOS 8.3 alias not being
//     one. Directories have Nlink 1 and the size of their index
//     allocation (0 when the index fits in the record), as ntfs-3g shows.
//   - Names: the POSIX and Win32 name spaces; DOS-only 8.3 aliases are
//     skipped. Entries for records below 16 (the metafiles $MFT, $Bitmap,
//     $Extend, ...) are hidden, as ntfs-3g hides them; "System Volume
//     Information" is an ordinary directory and stays. Directory order is
//     the B-tree's (collation) order. Lookup matches exactly, then
//     case-insensitively.
//   - Content: resident and non-resident $DATA; holes read as zeros and
//     Blocks comes from the allocated (compressed) size, so sparse files
//     show fewer blocks than their size; bytes past the initialized size
//     read as zeros; LZNT1-compressed files are decompressed one
//     compression unit at a time (a one-unit cache per open file).
//     Encrypted (EFS) files, and files whose reparse tag says the content
//     lives elsewhere (WOF compression, deduplication, cloud placeholders),
//     cannot be opened: an error, never wrong bytes. Alternate data
//     streams are ignored.
//   - Symbolic links: Windows symlinks and junctions (reparse points) and
//     Interix symlinks (what ntfs-3g itself creates: a system file holding
//     "IntxLNK\1" and the target). Relative targets come back with "/" for
//     "\". Absolute targets on a drive ("\??\C:\dir\x") come back as a
//     path relative to the link's directory that climbs to the volume root
//     ("../../dir/x"); ntfs-3g instead prints an absolute path under its
//     own mount point ("/mnt/dir/x" for junctions, "/mnt/.NTFS-3G/C:/dir/x"
//     for symlinks), which means nothing outside that mount. Other absolute
//     forms (UNC, volume GUID) keep their text with "/" separators.
//   - Special files, as ntfs-3g stores and shows them (Interix style): a
//     system file without a reparse point is a FIFO when empty, a socket
//     when one byte long, a character or block device when it holds
//     "IntxCHR\0" or "IntxBLK\0" and a 64-bit major and minor (Rdev in the
//     Linux encoding). An empty file with the system attribute made on
//     Windows therefore shows as a FIFO, exactly as under ntfs-3g.
//   - Modes: directories 0755, files and special files 0644, the
//     read-only attribute 0444, links 0777; UID and GID 0. Times are NTFS's 100 ns UTC times from
//     $STANDARD_INFORMATION: Btime creation, Mtime data change, Ctime MFT
//     change, Atime access.
//
// Hostile input: every offset, length and count read from a record is
// checked against the record, the attribute or the volume; run lists are
// bounded to the volume; index walks detect loops and stop at a depth of
// 32; attribute lists name at most 4096 extension records; caches are
// bounded by total weight (extents, directory entries). The exported
// methods also recover from panics and report them as ErrMalformed, as a
// last line of defence that the fuzz target is there to keep unused.
//
// Speed: an open file keeps its extent map; ReadAt maps an offset by
// binary search and reads each run of contiguous clusters with one read of
// the image.
package ntfs
