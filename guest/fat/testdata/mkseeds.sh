#!/bin/sh
# Regenerates the fuzz seed images: tiny FAT12/16/32 volumes made by
# mkfs.vfat and populated by mtools, trailing zeros trimmed (the fuzz
# harness pads the volume back with zeros), gzipped.
set -eu
cd "$(dirname "$0")"
export MTOOLS_SKIP_CHECK=1 LC_ALL=C.UTF-8 TZ=UTC
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/dir/sub"
printf 'hello\n' >"$tmp/src/hello.txt"
printf 'x\n' >"$tmp/src/MixedCase Long Name.txt"
printf 'utf8\n' >"$tmp/src/ünï ☃.txt"
: >"$tmp/src/empty"
head -c 3000 /dev/urandom >"$tmp/src/dir/sub/three-clusters.bin"
printf 'l\n' >"$tmp/src/dir/lower.txt"
mk() { # name fatbits sizeKiB sectors-per-cluster
	rm -f "$tmp/img"
	mkfs.vfat -C -F "$2" -s "$4" -n SEED "$tmp/img" "$3" >/dev/null
	mcopy -i "$tmp/img" -s -m "$tmp/src/"* ::/
	python3 -c 'import sys; b=open(sys.argv[1],"rb").read().rstrip(b"\0"); open(sys.argv[1],"wb").write(b)' "$tmp/img"
	gzip -9n <"$tmp/img" >"$1.img.gz"
}
mk fat12 12 64 1
mk fat16 16 2200 1
mk fat32 32 33300 1
