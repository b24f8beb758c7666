#!/usr/bin/env bash
# guest-image.sh - build (once, cached) a tiny bootable Linux guest for the
# libvirt integration tests that need a real operating system in the
# domain: the QEMU guest agent (--quiesce) and a busy ext4 writer.
#
# It lives in scripts/libvirt/ beside nothing else yet, the way
# scripts/openstack/ holds the helpers of openstack-up.sh: it is a part of
# the libvirt test bed (test/libvirt runs it), not an entry point of its
# own, and libvirt-up.sh installs what it needs.
#
# Made from this machine's own parts only, nothing downloaded:
#   - the Debian kernel /boot/vmlinuz-<ver> (the running one when /boot has
#     it, else the newest with /lib/modules/<ver>), booted directly by QEMU
#     (<kernel>, <initrd>, <cmdline> in the domain XML): the ELF vmlinux
#     taken out of it when the kernel has a PVH entry point (QEMU boots it
#     without the xz decompression, which costs seconds under TCG), else
#     the bzImage;
#   - the modules it needs as .ko files from /lib/modules/<ver> with their
#     dependencies from modules.dep, loaded with insmod in dependency order
#     (virtio_pci, virtio_blk, virtio_console, ext4 + crc32c);
#   - busybox and the real qemu-ga of Debian's qemu-guest-agent package,
#     with the shared libraries ldd names;
#   - an init (below) that mounts the first virtio disk /dev/vda (a whole-
#     disk ext4) on /mnt, starts qemu-ga on the virtio-serial port named
#     org.qemu.guest_agent.0, then writes files into /mnt/w forever.
#
# Guest protocol (what the tests read on the serial console, ttyS0):
#   cairn-guest: ready agent=/dev/vportNpM     qemu-ga and the writer run
#   cairn-writer N                             /mnt/w/fN is written (in the page cache)
#   cairn-guest: error ...                     the guest cannot go on
# With cairn.nomount on the kernel command line the guest mounts nothing
# and writes nothing: qemu-ga runs with no file system it can freeze.
# File /mnt/w/fN holds the line "cairn guest file N" repeated, cut at
# 16384 bytes; the writer keeps the newest 300 files and deletes older ones.
# It continues numbering after the highest file already on the disk.
#
# Output (stdout), one KEY=VALUE per line:
#   kernel=PATH initrd=PATH cmdline=STRING version=KERNELVERSION
# Cache: $CAIRN_GUEST_CACHE, else $XDG_CACHE_HOME/cairn/libvirt-guest, else
# /var/cache/cairn/libvirt-guest; one folder per input key (kernel, modules,
# busybox, qemu-ga and this script), built atomically under a lock; older
# builds for the same kernel are removed. A second run only stats its
# inputs (~0.1-0.4 s). A build takes ~10 s and leaves ~75 MB.
#   CAIRN_GUEST_KERNEL   kernel version to use (default: see above)
set -euo pipefail

prog=${0##*/}
die() { echo "$prog: $*" >&2; exit 1; }
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# 1. inputs ----------------------------------------------------------------
pick_kernel() {
  local v
  if [[ -n ${CAIRN_GUEST_KERNEL:-} ]]; then echo "$CAIRN_GUEST_KERNEL"; return; fi
  v=$(uname -r)
  if [[ -r /boot/vmlinuz-$v && -r /lib/modules/$v/modules.dep ]]; then echo "$v"; return; fi
  for f in $(ls -1 /boot/vmlinuz-* 2>/dev/null | sort -rV); do
    v=${f#/boot/vmlinuz-}
    [[ -r /lib/modules/$v/modules.dep ]] && { echo "$v"; return; }
  done
  die "no /boot/vmlinuz-<ver> with /lib/modules/<ver>/modules.dep; install linux-image-amd64 (scripts/libvirt-up.sh does)"
}
KVER=$(pick_kernel)
KERNEL=/boot/vmlinuz-$KVER
MODDIR=/lib/modules/$KVER
[[ -r $KERNEL ]] || die "cannot read $KERNEL (run as root)"
[[ -r $MODDIR/modules.dep ]] || die "$MODDIR/modules.dep missing; install linux-image-$KVER"
for tool in busybox qemu-ga cpio gzip ldd sha256sum flock; do
  command -v "$tool" >/dev/null || die "$tool not installed; run scripts/libvirt-up.sh as root (it installs busybox, qemu-guest-agent, cpio)"
done
BUSYBOX=$(command -v busybox)
QEMUGA=$(command -v qemu-ga)

# The cache key: the inputs' names, sizes and times (a package upgrade
# changes them) and this script's bytes; a few processes only, so that a
# cached run costs ~0.1 s.
KEY=$( {
  echo "$KVER"
  stat -L -c '%n %s %Y' "$KERNEL" "$BUSYBOX" "$QEMUGA" "$MODDIR/modules.dep"
  cat "$0"
} | sha256sum | cut -c1-16)

CACHE=${CAIRN_GUEST_CACHE:-}
if [[ -z $CACHE ]]; then
  if [[ -n ${XDG_CACHE_HOME:-} ]]; then CACHE=$XDG_CACHE_HOME/cairn/libvirt-guest; else CACHE=/var/cache/cairn/libvirt-guest; fi
fi
OUT=$CACHE/$KVER-$KEY
CMDLINE="console=ttyS0 quiet loglevel=3 panic=-1 mitigations=off"
emit() {
  echo "kernel=$OUT/$(cat "$OUT/kernel-name")"
  echo "initrd=$OUT/initrd"
  echo "cmdline=$CMDLINE"
  echo "version=$KVER"
}
if [[ -f $OUT/done ]]; then emit; exit 0; fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [[ -f $OUT/done ]]; then emit; exit 0; fi # built by another run meanwhile

# 2. build -----------------------------------------------------------------
T0=$SECONDS
# Modules wanted; their dependencies come from modules.dep. crc32c_generic
# is what ext4 asks the crypto API for (metadata_csum): no modprobe in the
# guest can load it on request.
WANT=(virtio_pci virtio_blk virtio_console crc32c_generic ext4)

# modpath NAME -> path relative to MODDIR (modules.dep spells - and _ as the file does)
modpath() {
  local n=$1 p
  p=$(grep -E "(^|/)(${n}|${n//_/-})\.ko(\.xz|\.zst|\.gz)?:" "$MODDIR/modules.dep" | head -1 | cut -d: -f1)
  [[ -n $p ]] || die "module $n not in $MODDIR/modules.dep (kernel $KVER has it built in? then drop it from WANT)"
  echo "$p"
}
# order: each module after its dependencies (depth first over modules.dep)
declare -A SEEN=()
ORDER=()
visit() {
  local p=$1 d
  [[ -n ${SEEN[$p]:-} ]] && return
  SEEN[$p]=1
  for d in $(grep -E "^${p//./\\.}:" "$MODDIR/modules.dep" | cut -d: -f2-); do visit "$d"; done
  ORDER+=("$p")
}
for n in "${WANT[@]}"; do visit "$(modpath "$n")"; done

TMP=$(mktemp -d "$CACHE/.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
ROOT=$TMP/root
mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,mnt,run,tmp,etc,lib/modules,var}
ln -s ../run "$ROOT/var/run"
cp "$BUSYBOX" "$ROOT/bin/busybox"
cp "$QEMUGA" "$ROOT/sbin/qemu-ga"
# shared libraries of both, at the paths the loader looks up
for lib in $(ldd "$BUSYBOX" "$QEMUGA" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
  mkdir -p "$ROOT$(dirname "$lib")"
  cp -L "$lib" "$ROOT$lib"
done
# Debian's loader path is /lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...; ldd
# printed the link, cp -L copied the target's bytes: enough.
i=0
for p in "${ORDER[@]}"; do
  i=$((i + 1))
  f=$(printf '%02d-%s' "$i" "${p##*/}")
  case $p in
    *.ko) cp "$MODDIR/$p" "$ROOT/lib/modules/$f" ;;
    *.ko.xz) xz -dc "$MODDIR/$p" >"$ROOT/lib/modules/${f%.xz}" ;;
    *.ko.zst) zstd -qdc "$MODDIR/$p" >"$ROOT/lib/modules/${f%.zst}" ;;
    *.ko.gz) gzip -dc "$MODDIR/$p" >"$ROOT/lib/modules/${f%.gz}" ;;
  esac
done
echo "root:x:0:0:root:/:/bin/sh" >"$ROOT/etc/passwd"
echo "root:x:0:" >"$ROOT/etc/group"

cat >"$ROOT/init" <<'INIT'
#!/bin/busybox sh
# cairn test guest init (scripts/libvirt/guest-image.sh)
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec >/dev/console 2>&1 </dev/null
fail() { echo "cairn-guest: error $*"; exec sleep 2147483647; }
for m in /lib/modules/*.ko; do
  insmod "$m" || fail "insmod $m"
done
n=0
while [ ! -b /dev/vda ]; do
  n=$((n + 1)); [ $n -gt 200 ] && fail "no /dev/vda after 20 s"
  usleep 100000
done
nomount=
grep -qw cairn.nomount /proc/cmdline && nomount=1
[ -n "$nomount" ] || mount -t ext4 /dev/vda /mnt || fail "mount /dev/vda"
port=
n=0
while [ -z "$port" ]; do
  for f in /sys/class/virtio-ports/*/name; do
    d=${f%/name}
    [ -r "$f" ] && [ "$(cat "$f")" = org.qemu.guest_agent.0 ] && port=/dev/${d##*/}
  done
  [ -n "$port" ] && [ -c "$port" ] && break
  port=
  n=$((n + 1)); [ $n -gt 200 ] && fail "no virtio-serial port org.qemu.guest_agent.0 after 20 s"
  usleep 100000
done
mkdir -p /run/qga
qemu-ga --method virtio-serial --path "$port" --statedir /run/qga &
if [ -n "$nomount" ]; then
  echo "cairn-guest: ready agent=$port nomount"
  exec sleep 2147483647
fi
mkdir -p /mnt/w
i=0
for f in /mnt/w/f*; do
  [ -e "$f" ] || continue
  k=${f##*/f}
  case $k in *[!0-9]*) rm -f "$f"; continue ;; esac
  [ "$k" -gt "$i" ] && i=$k
done
echo "cairn-guest: ready agent=$port"
while :; do
  i=$((i + 1))
  yes "cairn guest file $i" | head -c 16384 >/mnt/w/f$i.tmp && mv /mnt/w/f$i.tmp /mnt/w/f$i || fail "write /mnt/w/f$i"
  echo "cairn-writer $i"
  rm -f /mnt/w/f$((i - 300))
  usleep 20000
done
INIT
chmod 755 "$ROOT/init"

# Uncompressed: QEMU loads it from the host, and the guest need not gunzip
# 10 MB under TCG (~1 CPU-second of the boot).
(cd "$ROOT" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc --quiet -R 0:0) >"$TMP/initrd"
# The kernel: the ELF vmlinux inside the bzImage when the kernel has a PVH
# entry point (CONFIG_PVH), which QEMU boots directly, skipping the xz
# decompression under TCG (~2-4 of ~10 CPU-seconds of the boot); else the
# bzImage itself. Found the way the kernel's scripts/extract-vmlinux does.
cp "$KERNEL" "$TMP/vmlinuz"
KIMG=vmlinuz
if grep -q '^CONFIG_PVH=y' "/boot/config-$KVER" 2>/dev/null && command -v xz >/dev/null; then
  for pos in $(tr '\3757zXZ\000\n' '\nxxxxx=' <"$KERNEL" | grep -abo '^xxxxx' | cut -d: -f1); do
    tail -c "+$pos" "$KERNEL" | xz -dc 2>/dev/null >"$TMP/vmlinux" || true
    if [[ $(head -c 4 "$TMP/vmlinux" | od -An -c | tr -d ' ') == '177ELF' ]]; then
      KIMG=vmlinux
      rm "$TMP/vmlinuz"
      break
    fi
  done
  [[ $KIMG == vmlinux ]] || rm -f "$TMP/vmlinux"
fi
echo "$KIMG" >"$TMP/kernel-name"
rm -rf "$ROOT"
touch "$TMP/done"
rm -rf "$OUT"
mv "$TMP" "$OUT"
trap - EXIT
# QEMU reads kernel and initrd when a domain starts: no running guest needs old builds.
find "$CACHE" -mindepth 1 -maxdepth 1 -type d -name "$KVER-*" ! -name "${OUT##*/}" -exec rm -rf {} +
chmod 755 "$OUT"
echo "$prog: built $OUT ($(cat "$OUT/kernel-name"), $(du -sh "$OUT/initrd" | cut -f1) initrd, ${#ORDER[@]} modules) in $((SECONDS - T0)) s" >&2
emit
