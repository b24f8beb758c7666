#!/usr/bin/env bash
# Stops the test cloud that scripts/openstack-up.sh started: the processes it
# recorded in $STATE/run/*.pid and their descendants (uwsgi workers, privsep
# helpers), never anything found by name; then the Cinder share bind mount.
# Keeps the state (databases, Ceph, volumes) so that openstack-up.sh brings
# the same cloud back; --purge deletes it.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${CAIRN_OS_STATE:-/var/lib/openstack-lite}
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
T0=$(date +%s)
# shellcheck source=openstack/lib.sh
. "$HERE/openstack/lib.sh"
purge=0
case ${1:-} in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac

# RabbitMQ first and gracefully
if [[ -f $STATE/rabbitmq/env ]] && alive rabbitmq; then
  ( . "$STATE/rabbitmq/env"; timeout 30 /usr/lib/rabbitmq/bin/rabbitmqctl stop >/dev/null 2>&1 ) || true
fi
pids=()
for f in "$STATE"/run/*.pid; do
  [[ -f $f ]] || continue
  p=$(cat "$f")
  kill -0 "$p" 2>/dev/null && pids+=($(descendants "$p") "$p")
done
if (( ${#pids[@]} )); then
  log "stopping ${#pids[@]} processes"
  kill -TERM "${pids[@]}" 2>/dev/null
  for _ in $(seq 24); do
    left=(); for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
    (( ${#left[@]} )) || break
    sleep 0.5
  done
  # cinder-scheduler and cinder-volume ignore SIGTERM for about 10 s
  (( ${#left[@]} )) && { log "killing ${#left[@]} that ignored SIGTERM"; kill -KILL "${left[@]}" 2>/dev/null; }
fi
rm -f "$STATE"/run/*.pid
# epmd daemonizes outside our process tree: stop it through its own protocol
if [[ -f $STATE/rabbitmq/env ]]; then
  ( . "$STATE/rabbitmq/env"; epmd -names >/dev/null 2>&1 && epmd -kill >/dev/null 2>&1 ) || true
fi
# the fake virt driver's local disks (servers with cairn_test_local_disks):
# read-only loop devices over exported volume files, and their links
for f in "$STATE"/nova/instances/cairn-disk-*.raw; do
  [[ -e $f ]] || continue
  for d in $(losetup -j "$f" -O NAME -n); do losetup -d "$d" || true; done
  rm -f "$f"
done
[[ -d $STATE/disk-by-id ]] && find "$STATE/disk-by-id" -maxdepth 1 -type l -delete
if [[ -d $STATE ]]; then
  grep -o " $STATE/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount "$m"; done
fi
(( purge )) && rm -rf "$STATE" && log "removed $STATE"
log "openstack stopped"
