#!/usr/bin/env bash
# Stops what scripts/libvirt-up.sh started: ends the jobs of, stops and
# undefines the test domains (named cairn-test-*, with their checkpoint and
# snapshot metadata), then stops the libvirtd whose pid libvirt-up.sh
# recorded. A libvirtd that it did not start is left running. Kills only
# pids from pid files, after checking what they are; never by name.
#   --purge  also removes the state folder and the qemu.conf libvirt-up.sh wrote
# Idempotent: safe when nothing runs.
set -uo pipefail
STATE=${CAIRN_LIBVIRT_STATE:-/var/lib/cairn-libvirt}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export LIBVIRT_DEFAULT_URI=qemu:///system
PURGE=0; [[ ${1:-} == --purge ]] && PURGE=1
alive() { [[ -r /proc/$1/stat ]] && ! awk '{exit !($3=="Z")}' "/proc/$1/stat"; }
stop_pid() { # TERM, wait up to 15 s, then KILL
  local p=$1
  alive "$p" || return 0
  kill -TERM "$p" 2>/dev/null
  for _ in $(seq 30); do alive "$p" || return 0; sleep 0.5; done
  echo "libvirt-down: force-killing $p"; kill -KILL "$p" 2>/dev/null
}

if command -v virsh >/dev/null && virsh version >/dev/null 2>&1; then
  for d in $(virsh list --all --name | grep '^cairn-test-'); do
    virsh domjobabort "$d" >/dev/null 2>&1
    if [[ $(virsh domstate "$d" 2>/dev/null) != "shut off" ]]; then
      virsh destroy "$d" >/dev/null 2>&1
    fi
    virsh undefine --checkpoints-metadata --snapshots-metadata "$d" >/dev/null 2>&1 && echo "libvirt-down: removed domain $d"
  done
fi

PIDF=$STATE/run/libvirtd.pid
if [[ -f $PIDF ]]; then
  p=$(cat "$PIDF")
  if alive "$p" && grep -q libvirtd "/proc/$p/comm" 2>/dev/null; then
    stop_pid "$p"; echo "libvirt-down: stopped libvirtd (pid $p)"
  fi
  rm -f "$PIDF"
fi

if ((PURGE)); then
  grep -qF '# written by cairn scripts/libvirt-up.sh' /etc/libvirt/qemu.conf 2>/dev/null && rm -f /etc/libvirt/qemu.conf
  rm -rf "$STATE" && echo "libvirt-down: removed $STATE"
fi
exit 0
