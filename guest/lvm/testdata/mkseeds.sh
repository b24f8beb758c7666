#!/bin/sh
# Regenerates the fuzz seeds: the label and metadata area of a real PV
# made by the lvm2 tools on a loop device (no device-mapper needed: LVs are
# created inactive), trailing zeros trimmed and gzipped, and its metadata
# text. Needs root.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
truncate -s 32m "$tmp/pv.img"
dev=$(losetup -f --show "$tmp/pv.img")
trap 'losetup -d "$dev"; rm -rf "$tmp"' EXIT
conf="activation{udev_sync=0 udev_rules=0 monitoring=0} backup{backup=0 archive=0} global{activation=0}
devices{obtain_device_list_from_udev=0 use_devicesfile=0 global_filter=[\"a|^$dev\$|\",\"r|.*|\"]}"
export LVM_SUPPRESS_FD_WARNINGS=1
pvcreate --config "$conf" -q "$dev" >/dev/null
vgcreate --config "$conf" -q -s 1m seedvg "$dev" >/dev/null
lvcreate --config "$conf" -q -an -Zn -n one -L 3m seedvg >/dev/null 2>&1
lvcreate --config "$conf" -q -an -Zn -n two -L 2m seedvg >/dev/null 2>&1
lvextend --config "$conf" -q -L +2m seedvg/one >/dev/null 2>&1
python3 - "$tmp/pv.img" "$here" <<'PY'
import sys, struct
b = open(sys.argv[1], "rb").read(1 << 20)
open(sys.argv[1] + ".head", "wb").write(b.rstrip(b"\0"))
mda = 4096
off, size = struct.unpack_from("<QQ", b, mda + 40)
open(sys.argv[2] + "/seedvg.txt", "wb").write(b[mda + off: mda + off + size].rstrip(b"\0"))
PY
gzip -9n <"$tmp/pv.img.head" >"$here/pv.img.gz"
