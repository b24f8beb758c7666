#!/bin/sh
# Regenerates the fuzz seeds: tiny XFS images made by mkfs.xfs and filled
# from a prototype file (no mount needed, so v4 works on kernels without
# v4 support), gzipped. Each holds short-form, block, leaf and node
# directories, inline and remote symlinks, devices, a FIFO and files.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
head -c 6000 /dev/urandom >"$tmp/src/data"
printf 'hello\n' >"$tmp/src/hello"
proto() {
  echo seed; echo 0 0
  echo 'd--755 0 0'
  echo 'hello ---644 1000 1000' "$tmp/src/hello"
  echo 'data ---600 0 0' "$tmp/src/data"
  echo 'setuid -u-755 0 0' "$tmp/src/hello"
  echo 'fast l--777 0 0 hello'
  # mkfs.xfs 6.1 writes v5 remote symlinks without their block header
  # (xfs_repair flags them), so only the v4 seed has one.
  [ "$remote" = 1 ] && echo "remote l--777 0 0 $(printf 'r/%.0s' $(seq 1 300))"
  echo 'null c--666 0 0 1 3'
  echo 'loop b--660 0 6 7 0'
  echo 'fifo p--644 0 0'
  for n in 0 5 40 150 600; do
    echo "d$n d--755 0 0"
    i=0
    while [ $i -lt $n ]; do echo "file-number-$i ---644 0 0 $tmp/src/hello"; i=$((i+1)); done
    echo '$'
  done
  echo '$'
}
mk() { # name, mkfs options...
  name=$1; remote=$2; shift 2
  proto >"$tmp/proto"
  truncate -s 0 "$tmp/img"; truncate -s 16m "$tmp/img"
  TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q -f -p "$tmp/proto" "$@" "$tmp/img" 2>/dev/null
  # Trailing zeros are dropped; the tests pad the volume to its size.
  python3 -c 'import sys; b=open(sys.argv[1],"rb").read().rstrip(b"\0"); open(sys.argv[1],"wb").write(b)' "$tmp/img"
  gzip -9n <"$tmp/img" >"$here/$name.img.gz"
}
mk v5 0 -b size=1024
mk v4 1 -m crc=0 -b size=512 -n ftype=0
