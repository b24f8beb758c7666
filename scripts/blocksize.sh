#!/usr/bin/env bash
# Measures the block size trade-off recorded in repo/FORMAT.md: for each
# block size, the first backup's time and repository size, the growth of a
# day-2 backup over the changed bytes, and the number of stored blocks
# (index records). Uses the bench disk (scripts/bench.sh builds it).
# Usage: scripts/blocksize.sh [BIN]   (env: SIZES="16384 65536 262144 1048576")
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-bin/cairn}")
WORK=$(realpath -m "${WORK:-.bench}")
DISK=$(ls "$WORK"/disk-*.raw 2>/dev/null | head -1)
[ -n "$DISK" ] || { echo "run scripts/bench.sh first to build the test disk" >&2; exit 1; }
export CAIRN_PASSWORD=blocksize
printf '%-10s %10s %12s %12s %14s %12s\n' block first_s repo_GB day2_MB growth/changed blocks
for bs in ${SIZES:-16384 65536 262144 1048576}; do
  img=$WORK/bs.raw; repo=$WORK/bs-repo
  rm -rf "$repo"; cp --sparse=always "$DISK" "$img"
  "$BIN" init -q --repo "$repo" --block-size "$bs" >/dev/null
  t0=$(date +%s.%N)
  "$BIN" backup -q --repo "$repo" --vm bs --disk vda="$img" >/dev/null
  t1=$(date +%s.%N)
  s1=$(du -sb "$repo" | cut -f1)
  changed=$(python3 scripts/mutate.py "$img" 3)
  "$BIN" backup -q --repo "$repo" --vm bs --disk vda="$img" >/dev/null
  s2=$(du -sb "$repo" | cut -f1)
  blocks=$("$BIN" show --repo "$repo" --json "$("$BIN" list --repo "$repo" --json | python3 -c 'import json,sys;print(json.load(sys.stdin)[0]["id"])')" \
    | python3 -c 'import json,sys; print(sum(d["stats"]["new_blocks"] for d in json.load(sys.stdin)["disk_details"]))')
  python3 -c "import sys; bs,t0,t1,s1,s2,ch,bl=sys.argv[1:]; print(f'{int(bs)//1024:>7} KiB {float(t1)-float(t0):10.2f} {int(s1)/1e9:12.2f} {(int(s2)-int(s1))/1e6:12.1f} {(int(s2)-int(s1))/int(ch):14.2f} {int(bl):12d}')" \
    "$bs" "$t0" "$t1" "$s1" "$s2" "$changed" "$blocks"
done
rm -rf "$WORK/bs.raw" "$WORK/bs-repo"
