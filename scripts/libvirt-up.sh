#!/usr/bin/env bash
# Starts a real libvirtd + QEMU (TCG) on this machine for cairn's libvirt
# integration tests and benchmarks: URI qemu:///system, unix socket only,
# no network, no systemd. Idempotent: a second run only starts what is
# missing. Stop it with scripts/libvirt-down.sh.
#
# Choices (each one forced by a pitfall; see ingest/libvirt/doc.go):
#   - packages libvirt-daemon + libvirt-daemon-driver-qemu, NOT
#     libvirt-daemon-system (that one wants systemd/polkit and defines a
#     NAT network); nothing is started by the package scripts;
#   - the user libvirt-qemu must exist or the QEMU driver does not load,
#     even though qemu runs as root here;
#   - qemu.conf: root, no security driver, no cgroups, no namespaces,
#     stdio_handler "file" (no virtlogd);
#   - libvirtd -d with our own config and pid file; the first start probes
#     QEMU's capabilities (~8 s), later starts use the cache (< 1 s).
#
# Test domains are created by the tests themselves and are named
# cairn-test-*; libvirt-down.sh removes whatever of them is left.
#   CAIRN_LIBVIRT_STATE  state folder (default /var/lib/cairn-libvirt)
set -euo pipefail

STATE=${CAIRN_LIBVIRT_STATE:-/var/lib/cairn-libvirt}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export LIBVIRT_DEFAULT_URI=qemu:///system
T0=$SECONDS
log() { printf '[libvirt-up %3ss] %s\n' "$((SECONDS - T0))" "$*"; }
[[ $(id -u) == 0 ]] || { echo "libvirt-up.sh: run as root" >&2; exit 1; }

# 1. packages -------------------------------------------------------------
# The second line is what scripts/libvirt/guest-image.sh builds the Linux
# test guest from (kernel + modules, busybox, the real qemu-ga, cpio) and
# what the tests check its ext4 with.
PKGS=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
      qemu-system-x86 qemu-utils libnbd-bin openssh-server openssh-client
      qemu-guest-agent busybox cpio linux-image-amd64 e2fsprogs)
missing=()
installed=" $(dpkg-query -W -f='${Package}:${Status}\n' "${PKGS[@]}" 2>/dev/null | awk -F: '/ok installed/ {printf "%s ", $1}' || true)"
for p in "${PKGS[@]}"; do
  [[ $installed == *" $p "* ]] || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then # no daemon starts during install
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # apt-get waits up to 600 s for a lock that others hold; a failure may
  # also be stale package lists: update once, then try again (3 tries).
  ok=0 updated=0
  for _ in 1 2 3; do
    if apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends "${missing[@]}"; then ok=1; break; fi
    if ((!updated)); then apt-get -o DPkg::Lock::Timeout=600 update -q && updated=1; fi
  done
  ((policy)) && rm -f /usr/sbin/policy-rc.d
  ((ok)) || { echo "libvirt-up.sh: apt-get install failed" >&2; exit 1; }
  log "packages installed"
fi

# 2. user and configuration ----------------------------------------------
if ! getent passwd libvirt-qemu >/dev/null; then
  getent group kvm >/dev/null || addgroup --quiet --system kvm
  adduser --quiet --system --ingroup kvm --disabled-login --disabled-password \
    --home /var/lib/libvirt --no-create-home --gecos "Libvirt Qemu" libvirt-qemu
  log "created user libvirt-qemu"
fi
getent group libvirt-qemu >/dev/null || { addgroup --quiet --system libvirt-qemu; adduser --quiet libvirt-qemu libvirt-qemu; }

MARK='# written by cairn scripts/libvirt-up.sh'
QCONF=/etc/libvirt/qemu.conf
if [[ ! -s $QCONF ]] || grep -qF "$MARK" "$QCONF" || ! grep -qv '^\s*\(#\|$\)' "$QCONF"; then
  cat >"$QCONF" <<CONF
$MARK (libvirt-down.sh --purge removes it)
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
CONF
else
  log "WARNING: $QCONF has settings that are not ours; leaving it as it is"
fi

mkdir -p "$STATE"/{run,log}
cat >"$STATE/libvirtd.conf" <<CONF
listen_tls = 0
listen_tcp = 0
unix_sock_group = "root"
unix_sock_ro_perms = "0700"
unix_sock_rw_perms = "0700"
auth_unix_ro = "none"
auth_unix_rw = "none"
log_outputs = "3:file:$STATE/log/libvirtd.log"
CONF

# 3. libvirtd ---------------------------------------------------------------
alive() { [[ -r /proc/$1/stat ]] && ! awk '{exit !($3=="Z")}' "/proc/$1/stat"; }
PIDF=$STATE/run/libvirtd.pid
if [[ -f $PIDF ]] && alive "$(cat "$PIDF")"; then
  log "libvirtd already running (pid $(cat "$PIDF"))"
elif virsh version >/dev/null 2>&1; then
  log "a libvirtd that is not ours answers on qemu:///system; using it (libvirt-down.sh leaves it)"
else
  rm -f "$PIDF"
  /usr/sbin/libvirtd -d -f "$STATE/libvirtd.conf" -p "$PIDF"
  for _ in $(seq 600); do virsh version >/dev/null 2>&1 && break; sleep 0.1; done
  virsh version >/dev/null 2>&1 || { echo "libvirt-up.sh: libvirtd did not answer; see $STATE/log/libvirtd.log" >&2; exit 1; }
  log "started libvirtd (pid $(cat "$PIDF"))"
fi
grep -q "domain type='qemu'" <<<"$(virsh capabilities)" || { echo "libvirt-up.sh: libvirtd has no QEMU driver; see $STATE/log/libvirtd.log" >&2; exit 1; }
log "ready: qemu:///system"
