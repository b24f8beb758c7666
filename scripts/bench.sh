#!/usr/bin/env bash
# cairn benchmark: one run, side by side, on a realistic disk image.
#   cat and lz4 -1 of the image (the floor), first backup, second backup after
#   a few percent of the data changed, restore. Figures: MB/s over the logical
#   size, ratio to cat, peak RSS, repository growth / changed bytes. Then the
#   mount figures on the same repository (scripts/bench-mount.sh; MOUNT=0 skips).
# Usage: scripts/bench.sh [BIN]   (env: SIZE=8G DATA=3G CHANGE_PCT=3 WORK=.bench)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-bin/cairn}")
SIZE=${SIZE:-8G}
DATA=${DATA:-3G}
CHANGE_PCT=${CHANGE_PCT:-3}
WORK=$(realpath -m "${WORK:-.bench}")
mkdir -p "$WORK"
for t in lz4 /usr/bin/time python3; do
  command -v "$t" >/dev/null || { echo "bench needs $t (apt-get install lz4 time python3)" >&2; exit 1; }
done

DISK=$WORK/disk-$SIZE-$DATA-many.raw
if [ ! -f "$DISK" ]; then
  echo "building $DISK ..."
  scripts/mkdisk.sh --out "$DISK.tmp" --size "$SIZE" --data "$DATA" --many 5000 --seed 7 && mv "$DISK.tmp" "$DISK"
fi
IMG=$WORK/vda.raw
cp --sparse=always "$DISK" "$IMG" && sync  # no writeback of the copy during the runs
LOGICAL=$(stat -c %s "$IMG")
ALLOC=$(( $(stat -c %b "$IMG") * 512 ))

REPO=$WORK/repo
rm -rf "$REPO" "$WORK/restored.raw"
export CAIRN_REPO=$REPO CAIRN_PASSWORD=bench
"$BIN" init --quiet >/dev/null

# timed NAME CMD...: runs CMD, records seconds and peak RSS (KiB).
declare -A SECS RSS
timed() {
  local name=$1; shift
  local out
  /usr/bin/time -o "$WORK/time.out" -f '%e %M' "$@" >/dev/null 2>"$WORK/$name.err" || { cat "$WORK/$name.err" >&2; exit 1; }
  out=$(tail -1 "$WORK/time.out")
  SECS[$name]=${out% *}
  RSS[$name]=${out#* }
}

cat "$IMG" >/dev/null # warm the page cache once so every contender reads the same way
timed cat sh -c "cat '$IMG' >/dev/null"
timed lz4 sh -c "lz4 -1 -c '$IMG' >/dev/null"
timed backup1 "$BIN" backup --quiet --vm bench --disk vda="$IMG"
SIZE1=$(du -sb "$REPO" | cut -f1)

# Change CHANGE_PCT% of the data: random extents of 64 KiB-4 MiB, 4 KiB
# aligned, inside allocated regions (files), with random content.
CHANGED=$(python3 scripts/mutate.py "$IMG" "$CHANGE_PCT") && sync
cat "$IMG" >/dev/null
timed backup2 "$BIN" backup --quiet --vm bench --disk vda="$IMG"
SIZE2=$(du -sb "$REPO" | cut -f1)
RP=$("$BIN" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["id"])')
timed restore "$BIN" restore disk --quiet "$RP" vda --to "$WORK/restored.raw"
cmp "$IMG" "$WORK/restored.raw" || { echo "RESTORE MISMATCH" >&2; exit 1; }
# The floor for restore: writing the same data sparse and making it durable,
# as restore does (cp --sparse=always from the page cache, then fsync).
cat "$IMG" >/dev/null
timed cpsync sh -c "cp --sparse=always '$IMG' '$WORK/cp.raw' && sync '$WORK/cp.raw'"
rm -f "$WORK/cp.raw"
RALLOC=$(( $(stat -c %b "$WORK/restored.raw") * 512 ))

python3 - "$LOGICAL" "$ALLOC" "$CHANGED" "$SIZE1" "$SIZE2" "$RALLOC" \
  "${SECS[cat]}" "${SECS[lz4]}" "${SECS[backup1]}" "${SECS[backup2]}" "${SECS[restore]}" "${SECS[cpsync]}" \
  "${RSS[backup1]}" "${RSS[backup2]}" "${RSS[restore]}" <<'PY'
import sys
a = sys.argv[1:]
logical, alloc, changed, size1, size2, ralloc = map(int, a[:6])
cat, lz4, b1, b2, rs, cps = map(float, a[6:12])
rss = dict(zip(["backup1", "backup2", "restore"], map(int, a[12:15])))
print(f"\ncairn bench: {logical/2**30:.1f} GiB image, {alloc/1e9:.2f} GB allocated, {changed/1e6:.0f} MB changed for the second backup\n")
print(f"{'run':<22}{'seconds':>9}{'MB/s':>9}{'x cat':>8}{'peak RSS':>11}")
def row(name, s, key=None):
    mbs = logical / max(s, 1e-3) / 1e6
    r = f"{rss[key]/1024:.0f} MB" if key else ""
    print(f"{name:<22}{s:>9.2f}{mbs:>9.0f}{cat/max(s,1e-3):>8.2f}{r:>11}")
row("cat (floor)", cat); row("lz4 -1", lz4); row("cp --sparse + fsync", cps)
row("cairn backup (first)", b1, "backup1"); row("cairn backup (second)", b2, "backup2"); row("cairn restore", rs, "restore")
print(f"\nrepository after first backup: {size1/1e9:.2f} GB ({alloc/max(size1,1):.2f}x smaller than the allocated data)")
print(f"second backup grew the repository by {(size2-size1)/1e6:.1f} MB = {(size2-size1)/max(changed,1):.2f}x the changed bytes")
print(f"restored image: {ralloc/1e9:.2f} GB allocated of {logical/1e9:.2f} GB (sparse), byte-identical")
print(f"restore took {rs/max(cps,1e-3):.2f}x the time of cp --sparse + fsync of the same image (the disk's floor)")
PY

# The mount figures use the unchanged image: mutate.py writes random bytes
# over file-system extents, so the changed image's ext4 is no longer one a
# kernel loop mount (the cp -a reference) can copy from.
if [[ ${MOUNT:-1} != 0 ]]; then
  scripts/bench-mount.sh "$DISK"
fi
