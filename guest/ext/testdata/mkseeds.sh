#!/bin/sh
# Regenerates the fuzz seed images (run as root; needs e2fsprogs and a
# kernel with ext4 and loop). Each is a small real file system, gzipped.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'umount "$tmp/mnt" 2>/dev/null || true; rm -rf "$tmp"' EXIT
src=$tmp/src
mkdir -p "$src/dir/sub" "$tmp/mnt"
echo hello > "$src/small"
yes indirect | head -c 14000 > "$src/indirect"  # single indirect with 1 KiB blocks
truncate -s 300000 "$src/sparse"
printf data | dd of="$src/sparse" bs=1 seek=150000 conv=notrunc 2>/dev/null
ln -s small "$src/fast"
ln -s "$(printf 'x%.0s' $(seq 80))" "$src/slow"
ln "$src/small" "$src/dir/hard"
mkfifo "$src/fifo"
mknod "$src/null" c 1 3
for i in $(seq 30); do echo $i > "$src/dir/sub/file-with-a-longer-name-$i"; done

mk() { # name mkfs args...
	name=$1; shift
	"$@" "$tmp/$name.img"
	gzip -9n < "$tmp/$name.img" > "$name.img.gz"
}
mk ext2-rev0 sh -c 'truncate -s 256K "$0" && mkfs.ext2 -q -F -r 0 -b 1024 -N 64 -d '"$src"' "$0"'
mk ext3-blockmap sh -c 'truncate -s 2M "$0" && mkfs.ext3 -q -F -b 1024 -N 64 -d '"$src"' "$0"'
mk ext4-inline sh -c 'truncate -s 512K "$0" && mkfs.ext4 -q -F -O ^has_journal,inline_data -b 1024 -N 64 -d '"$src"' "$0"'
mk ext4-64bit sh -c 'truncate -s 512K "$0" && mkfs.ext4 -q -F -O ^has_journal,64bit,metadata_csum -b 1024 -N 64 -d '"$src"' "$0"'

# A dirty journal: mounted, written, committed by fsync, copied while mounted.
img=$tmp/dirty.img
truncate -s 2M "$img"
mkfs.ext4 -q -F -b 1024 -N 64 -E lazy_itable_init=0,lazy_journal_init=0 "$img"
mount -o loop "$img" "$tmp/mnt"
cp -a "$src/." "$tmp/mnt/"
python3 - "$tmp/mnt" <<'PY'
import os, sys
m = sys.argv[1]
os.rename(f"{m}/small", f"{m}/dir/renamed")
os.unlink(f"{m}/sparse")
with open(f"{m}/new", "w") as f:
    f.write("after the snapshot\n"); f.flush(); os.fsync(f.fileno())
fd = os.open(m, os.O_RDONLY); os.fsync(fd); os.close(fd)
PY
cp --sparse=always "$img" "$tmp/dirty-copy.img"
umount "$tmp/mnt"
gzip -9n < "$tmp/dirty-copy.img" > ext4-dirty-journal.img.gz
ls -l ./*.gz
