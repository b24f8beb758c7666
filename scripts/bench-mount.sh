#!/usr/bin/env bash
# cairn mount benchmark: the restore browser over a real image, in one run
# (test/mount's TestBenchMount): cat of the source image vs cat and dd of
# vda.raw through the mount, dd next to the FUSE ceiling (a FUSE server that
# only hands over memory), cold and warm random 4 KiB reads, cp -a of a
# guest directory from the mount vs from a kernel loop mount of the same
# partition (root), first ls -l of a restore point and of a 5000-entry guest
# directory, daemon peak RSS.
# Usage: scripts/bench-mount.sh IMAGE [REPO]
#   IMAGE  a raw disk made by scripts/mkdisk.sh (partition 2 ext4, --many 5000)
#   REPO   a repository holding a restore point of VM "bench" of IMAGE
#          (CAIRN_PASSWORD unlocks it); without it one is made in a temp dir.
#          Its newest point of "bench" is the one read: not .bench/repo after
#          make bench, whose second point is of the image mutate.py damaged.
# Env: CAIRN_BENCH_CACHE (256MiB), CAIRN_BENCH_GUEST_DIR (usr),
#      CAIRN_BENCH_BIG_DIR (srv/many), CAIRN_BENCH_TMP (where copies go).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=$(realpath "${1:?usage: $0 IMAGE [REPO]}")
export CAIRN_BENCH_IMAGE=$IMAGE
[[ -n ${2:-} ]] && export CAIRN_BENCH_REPO=$(realpath "$2")
export CAIRN_PASSWORD=${CAIRN_PASSWORD:-bench}
GO=${GO:-go}
echo
echo "cairn mount bench: $IMAGE"
$GO test ./test/mount -run '^TestBenchMount$' -count=1 -v -timeout 60m |
	sed -n 's/^ *bench_test.go:[0-9]*: /  /p; /^--- FAIL/p; /^FAIL/p'
exit "${PIPESTATUS[0]}"
