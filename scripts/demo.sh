#!/usr/bin/env bash
# cairn demo: build a sample VM disk, back it up twice, list, restore,
# verify byte for byte, and check the repository. Everything lives in .demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-bin/cairn}
BIN=$(realpath "$BIN")
DEMO=$PWD/.demo
rm -rf "$DEMO" && mkdir -p "$DEMO"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
for tool in mkfs.ext4 sfdisk; do
  command -v "$tool" >/dev/null || { echo "demo needs $tool: apt-get install e2fsprogs fdisk" >&2; exit 1; }
done

step "building a sample VM disk (GPT, ext4 with real files, empty space)"
scripts/mkdisk.sh --out "$DEMO/web1-vda.raw" --size 1G --data 200M --seed 1

export CAIRN_REPO=$DEMO/repo
printf 'demo-password\n' > "$DEMO/password"
export CAIRN_PASSWORD_FILE=$DEMO/password

step "cairn init (encrypted)"
"$BIN" init

step "cairn backup (first: every block is new)"
"$BIN" backup --vm web1 --disk vda="$DEMO/web1-vda.raw" --tag env=demo
cp --sparse=always "$DEMO/web1-vda.raw" "$DEMO/web1-vda.day1.raw"

step "changing 8 MiB of the disk, then backing up again (only changed blocks are stored)"
dd if=/dev/urandom of="$DEMO/web1-vda.raw" bs=1M seek=300 count=8 conv=notrunc status=none
"$BIN" backup --vm web1 --disk vda="$DEMO/web1-vda.raw" --tag env=demo

step "cairn list"
"$BIN" list
FIRST=$("$BIN" list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])' 2>/dev/null \
  || "$BIN" list --json | grep -o '"id": "[0-9a-f]*"' | head -1 | cut -d'"' -f4)

step "cairn show $FIRST"
"$BIN" show "$FIRST"

step "cairn restore disk $FIRST vda (the first day's state)"
"$BIN" restore disk "$FIRST" vda --to "$DEMO/restored-day1.raw"
cmp "$DEMO/web1-vda.day1.raw" "$DEMO/restored-day1.raw"
echo "byte-identical to the disk as it was at the first backup:"
sha256sum "$DEMO/web1-vda.day1.raw" "$DEMO/restored-day1.raw"
echo "sparse: $(du -h "$DEMO/restored-day1.raw" | cut -f1) allocated of $(du -h --apparent-size "$DEMO/restored-day1.raw" | cut -f1)"

step "cairn check --read-data"
"$BIN" check --read-data

printf '\ndemo done: repository in %s (password in %s)\n' "$CAIRN_REPO" "$CAIRN_PASSWORD_FILE"
