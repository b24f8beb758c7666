#!/bin/sh
# Regenerates the fuzz seed: a tiny NTFS volume made by mkntfs and
# populated through ntfs-3g (needs root and /dev/fuse), gzipped.
set -eu
out=$(cd "$(dirname "$0")" && pwd)/ntfs.img.gz
tmp=$(mktemp -d)
trap 'umount "$tmp/mnt" 2>/dev/null || true; rm -rf "$tmp"' EXIT
truncate -s 2M "$tmp/img"
mkntfs -F -f -Q -L SEED "$tmp/img" >/dev/null 2>&1
mkdir "$tmp/mnt"
ntfs-3g -o compression "$tmp/img" "$tmp/mnt"
cd "$tmp/mnt"
mkdir -p dir/sub many compressed
printf 'hello\n' >hello.txt
printf 'x\n' >"ünï ☃ long name.txt"
: >empty
head -c 9000 /dev/urandom >dir/sub/nonresident.bin
ln dir/sub/nonresident.bin hardlink.bin
ln -s ../hello.txt dir/symlink
for i in $(seq 1 40); do : >"many/a rather long file name number $i.txt"; done
setfattr -n system.ntfs_attrib_be -v 0x00000810 compressed
yes 'compressible line' | head -c 20000 >compressed/text.txt
dd if=/dev/urandom of=sparse.bin bs=1 count=100 seek=60000 2>/dev/null
cd /
umount "$tmp/mnt"
# The 128 KiB $UpCase table (an identity map that gzip cannot shrink) is
# zeroed, and so are the backup boot sector in the last sector and the
# $LogFile filler: the reader reads none of them. Trailing zeros are
# trimmed; the tests pad the volume back to the size the boot sector
# gives, and FuzzOpen sees only the non-zero sectors (fuzz inputs of a
# megabyte or more are not mutated by Go's fuzzer).
python3 - "$tmp/img" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
i = b.find(b"\x00\x00\x01\x00\x02\x00\x03\x00\x04\x00")
assert i >= 0 and i % 512 == 0, "no $UpCase table found"
b[i:i + 128 * 1024] = bytes(128 * 1024)
b[-512:] = bytes(512)
# $LogFile is 0xFF filler after mkntfs: zero those blocks too.
for o in range(0, len(b), 4096):
    if b[o:o + 4096] == b"\xff" * 4096:
        b[o:o + 4096] = bytes(4096)
open(sys.argv[1], "wb").write(bytes(b).rstrip(b"\0"))
PY
gzip -9n <"$tmp/img" >"$out"
