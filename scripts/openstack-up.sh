#!/usr/bin/env bash
# A real OpenStack control plane on 127.0.0.1 for cairn's integration tests,
# from Debian 12 (OpenStack Zed) packages. Idempotent: it installs what is
# missing, rewrites the configs, starts what is not running and waits until
# every API answers. scripts/openstack-down.sh stops it (--purge: and its state).
#
#   Keystone :5000/v3   Glance :9292   Cinder :8776/v3 (+scheduler, volume)
#   Nova :8774/v2.1 (fake virt driver that also uploads image snapshots:
#     scripts/openstack/cairn_fakevirt.py) + conductor, scheduler, compute
#   Placement :8778     Neutron :9696 (API only; ML2 vxlan, no agents)
#   MariaDB :3306       RabbitMQ :5672
#   Ceph (one mon, mgr, osd on a sparse file, no auth): Cinder backend "rbd1",
#     volume type "rbd", the default (it snapshots in-use volumes);
#     Cinder backend "nfs1", volume type "nfs": a local directory (sparse files).
#
# What the tests get (all names fixed):
#   clouds.yaml   $STATE/clouds.yaml (STATE=/var/lib/openstack-lite by default)
#     cloud "openstack-lite"      admin in project admin (admin also holds
#                                 the admin role in the second project)
#     cloud "openstack-lite-alt"  user cairn-alt, member of project cairn-alt
#   env file      $STATE/cairn-test.env (sourceable):
#                 CAIRN_TEST_CLOUDS_YAML, OS_CLIENT_CONFIG_FILE, OS_CLOUD,
#                 CAIRN_TEST_CLOUD_ALT, CAIRN_TEST_PROJECT_ALT, CAIRN_TEST_CEPH_CONF
#   flavors       cairn.tiny (1 vCPU, 256 MiB, 1 GB), cairn.small (2, 512 MiB, 2 GB)
#   networks      cairn-net 10.66.0.0/24, cairn-net2 10.67.0.0/24, and
#                 cairn-nosec 10.68.0.0/24 with port_security_enabled=false;
#                 all shared; ports bind (servers on networks go ACTIVE)
#   quotas        raised for both projects
#   test-only byte access: rbd -c $CAIRN_TEST_CEPH_CONF export volumes/volume-<id> -
#   local disks   a server with metadata cairn_test_local_disks=yes stands for
#                 the host cairn runs on: an RBD volume Nova attaches to it shows
#                 up as a read-only loop device linked as
#                 $CAIRN_DISK_BY_ID_DIR/virtio-<volume id[:20]> (cairn_fakevirt.py)
#
# Environment: CAIRN_OS_STATE (state, configs, logs; default
# /var/lib/openstack-lite), CAIRN_OS_PASSWORD (every user; default secret).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
STATE=${CAIRN_OS_STATE:-/var/lib/openstack-lite}
PASS=${CAIRN_OS_PASSWORD:-secret}
HOST=127.0.0.1
# Nova's fake driver plus image snapshots that carry the base image's bytes
# (scripts/openstack/cairn_fakevirt.py)
NOVA_COMPUTE_DRIVER=cairn_fakevirt.SnapshotFakeDriver
CLOUD=openstack-lite
ALT=cairn-alt
NFS_SHARE="$HOST:/cinder-share"
# where the fake driver links the local disks of "cairn host" servers
BY_ID=$STATE/disk-by-id
# Debian's python and tools first: a pyenv python3 in PATH has no OpenStack modules
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
PY=/usr/bin/python3
T0=$(date +%s)
# shellcheck source=openstack/lib.sh
. "$HERE/openstack/lib.sh"
# shellcheck source=openstack/config.sh
. "$HERE/openstack/config.sh"

[[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts services)"

install_packages() {
  local pkgs=(keystone glance-api cinder-api cinder-scheduler cinder-volume
    nova-api nova-conductor nova-scheduler python3-nova placement-api neutron-server
    python3-openstackclient mariadb-server rabbitmq-server ceph-mon ceph-osd ceph-mgr
    uwsgi-core uwsgi-plugin-python3 qemu-utils sudo curl
    nfs-common)  # mount.nfs must exist or the NFS driver refuses to start; never run
  local missing=() p
  for p in "${pkgs[@]}"; do
    # "unpacked": installed while another apt run still configures it
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -Eq 'ok (installed|unpacked|half-configured)' || missing+=("$p")
  done
  (( ${#missing[@]} )) || return 0
  log "installing ${#missing[@]} packages: ${missing[*]}"
  # no systemd here: keep package scripts from starting stock services
  local ours=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; ours=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get -o DPkg::Lock::Timeout=600 update -q >>"$STATE/log/apt.out" 2>&1
  apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >"$STATE/log/apt.out" 2>&1 \
    || { tail -30 "$STATE/log/apt.out" >&2; die "apt-get install failed"; }
  (( ours )) && rm -f /usr/sbin/policy-rc.d
  log "packages installed"
}

make_dirs() {
  mkdir -p "$STATE"/{etc/keystone,etc/glance,etc/cinder,etc/nova,etc/placement,etc/neutron,log,run,lock,python} \
    "$STATE"/keystone/{fernet-keys,credential-keys} "$STATE"/glance/{images,staging} \
    "$STATE"/cinder/{share,mnt,conversion,state} "$STATE"/nova/instances "$STATE"/rabbitmq \
    "$STATE"/ceph/{mon,mgr,run,log} "$STATE/mysql-run"
  chmod 700 "$STATE"/keystone/*
}

start_mariadb() {
  write_mariadb_conf
  chown mysql:mysql "$STATE/mysql-run"
  if [[ ! -d $STATE/mysql/mysql ]]; then
    mkdir -p "$STATE/mysql"; chown mysql:mysql "$STATE/mysql"
    mariadb-install-db --defaults-file="$STATE/etc/my.cnf" --skip-test-db \
      --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.out" 2>&1
  fi
  launch mariadb mariadbd --defaults-file="$STATE/etc/my.cnf"
  until_ok 60 mariadb "$STATE/mysql-run/mariadb.log" mariadb-admin --socket="$STATE/mysql-run/mysqld.sock" ping
  local sql="CREATE USER IF NOT EXISTS 'openstack'@'$HOST' IDENTIFIED BY '$PASS';
    GRANT ALL PRIVILEGES ON *.* TO 'openstack'@'$HOST';" d
  for d in keystone glance cinder placement nova_api nova nova_cell0 neutron; do
    sql+="CREATE DATABASE IF NOT EXISTS $d;"
  done
  mariadb --socket="$STATE/mysql-run/mysqld.sock" -e "$sql"
}

start_rabbitmq() {
  write_rabbitmq_env
  launch rabbitmq bash -c ". '$STATE/rabbitmq/env' && exec /usr/lib/rabbitmq/bin/rabbitmq-server"
}

rabbitmqctl_q() { ( . "$STATE/rabbitmq/env"; /usr/lib/rabbitmq/bin/rabbitmqctl -q "$@" ); }

start_keystone() {
  local conf=$STATE/etc/keystone/keystone.conf
  write_keystone_conf
  if (( FRESH )); then keystone_setup "$conf"; fi
  wsgi keystone 5000 /usr/bin/keystone-wsgi-public --env "OS_KEYSTONE_CONFIG_FILES=$conf"
}

keystone_setup() {
  local conf=$1
  keystone-manage --config-file "$conf" db_sync 2>>"$STATE/log/db_sync.out"
  [[ -e $STATE/keystone/fernet-keys/0 ]] || keystone-manage --config-file "$conf" \
    fernet_setup --keystone-user root --keystone-group root 2>>"$STATE/log/db_sync.out"
  [[ -e $STATE/keystone/credential-keys/0 ]] || keystone-manage --config-file "$conf" \
    credential_setup --keystone-user root --keystone-group root 2>>"$STATE/log/db_sync.out"
  keystone-manage --config-file "$conf" bootstrap --bootstrap-password "$PASS" \
    --bootstrap-admin-url "http://$HOST:5000/v3/" --bootstrap-internal-url "http://$HOST:5000/v3/" \
    --bootstrap-public-url "http://$HOST:5000/v3/" --bootstrap-region-id RegionOne 2>>"$STATE/log/db_sync.out"
}

write_client_files() {
  cat >"$STATE/openrc" <<EOT
export OS_AUTH_URL=http://$HOST:5000/v3 OS_IDENTITY_API_VERSION=3
export OS_USERNAME=admin OS_PASSWORD=$PASS OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default OS_REGION_NAME=RegionOne
EOT
  local c
  {
    echo "clouds:"
    for c in "$CLOUD admin admin" "$CLOUD-alt $ALT $ALT"; do
      set -- $c
      cat <<EOT
  $1:
    auth:
      auth_url: http://$HOST:5000/v3
      username: $2
      password: $PASS
      project_name: $3
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
EOT
    done
  } >"$STATE/clouds.yaml.new"
  mv "$STATE/clouds.yaml.new" "$STATE/clouds.yaml"
  cat >"$STATE/cairn-test.env" <<EOT
export CAIRN_TEST_CLOUDS_YAML=$STATE/clouds.yaml
export OS_CLIENT_CONFIG_FILE=$STATE/clouds.yaml
export OS_CLOUD=$CLOUD
export CAIRN_TEST_CLOUD_ALT=$CLOUD-alt
export CAIRN_TEST_PROJECT_ALT=$ALT
export CAIRN_TEST_CEPH_CONF=$STATE/ceph/ceph.conf
export CAIRN_DISK_BY_ID_DIR=$BY_ID
EOT
}

db_syncs() {
  glance-manage --config-file "$STATE/etc/glance/glance-api.conf" db_sync >>"$STATE/log/db_sync.out" 2>&1
  cinder-manage --config-file "$STATE/etc/cinder/cinder.conf" db sync >>"$STATE/log/db_sync.out" 2>&1
  neutron-db-manage --config-file "$STATE/etc/neutron/neutron.conf" upgrade heads >>"$STATE/log/db_sync.out" 2>&1
  placement-manage --config-file "$STATE/etc/placement/placement.conf" db sync >>"$STATE/log/db_sync.out" 2>&1
  local nconf=$STATE/etc/nova/nova.conf cells
  nova-manage --config-file "$nconf" api_db sync >>"$STATE/log/db_sync.out" 2>&1
  cells=$(nova-manage --config-file "$nconf" cell_v2 list_cells 2>/dev/null)
  grep -q ' cell0 ' <<<"$cells" || nova-manage --config-file "$nconf" cell_v2 map_cell0 \
    --database_connection "$(dburl nova_cell0)" >>"$STATE/log/db_sync.out" 2>&1
  grep -q ' cell1 ' <<<"$cells" || nova-manage --config-file "$nconf" cell_v2 create_cell \
    --name cell1 >>"$STATE/log/db_sync.out" 2>&1
  nova-manage --config-file "$nconf" db sync >>"$STATE/log/db_sync.out" 2>&1
}

ceph() { timeout 30 /usr/bin/ceph -c "$STATE/ceph/ceph.conf" "$@"; }

# the monitor answers EPERM for a while after a cold start, and Cinder runs
# `ceph mon dump` on every attachment: wait for several answers in a row
mon_steady() {
  local ok=0 i
  for ((i = 0; i < 180 && ok < 3; i++)); do
    if ceph mon dump >/dev/null 2>&1; then ok=$((ok + 1)); else ok=0; alive ceph-mon || died ceph-mon "$STATE/log/ceph-mon.out"; fi
    sleep 1
  done
  (( ok >= 3 )) || die "ceph monitor never answered steadily; see $STATE/ceph/log"
}

start_ceph() {
  local cc=$STATE/ceph/ceph.conf
  [[ -f $STATE/ceph/fsid ]] || cat /proc/sys/kernel/random/uuid >"$STATE/ceph/fsid"
  write_ceph_conf
  if [[ ! -d $STATE/ceph/mon/a ]]; then
    monmaptool --create --add a "v1:$HOST:6789" --fsid "$(cat "$STATE/ceph/fsid")" "$STATE/ceph/monmap" >/dev/null
    ceph-mon -c "$cc" --mkfs -i a --monmap "$STATE/ceph/monmap"
  fi
  launch ceph-mon ceph-mon -c "$cc" -i a -f
  launch ceph-mgr ceph-mgr -c "$cc" -i x -f
  until_ok 90 ceph-mon "$STATE/log/ceph-mon.out" ceph -s
  if [[ ! -e $STATE/ceph/osd0.mkfs-done ]]; then
    # our own uuid for both "osd new" and mkfs, or the OSD boots with "wrong fsid"
    [[ -f $STATE/ceph/osd0.uuid ]] || cat /proc/sys/kernel/random/uuid >"$STATE/ceph/osd0.uuid"
    [[ $(ceph osd ls) == *0* ]] || ceph osd new "$(cat "$STATE/ceph/osd0.uuid")" 0 >/dev/null
    rm -rf "$STATE/ceph/osd0" "$STATE/ceph/osd0.block"; mkdir -p "$STATE/ceph/osd0"
    ceph-osd -c "$cc" -i 0 --mkfs --osd-uuid "$(cat "$STATE/ceph/osd0.uuid")" >>"$STATE/ceph/log/mkfs.out" 2>&1
    touch "$STATE/ceph/osd0.mkfs-done"
  fi
  launch ceph-osd ceph-osd -c "$cc" -i 0 -f
  osd_up() { [[ $(ceph osd stat 2>/dev/null) == *"1 up"* ]]; }
  until_ok 120 ceph-osd "$STATE/log/ceph-osd.out" osd_up
  if ! ceph osd pool ls | grep -x volumes >/dev/null; then  # not -q: an early exit could fail the pipe under pipefail
    ceph osd pool create volumes 16 >/dev/null
    ceph osd pool set volumes size 1 --yes-i-really-mean-it >/dev/null
    timeout 120 rbd -c "$cc" pool init volumes
  fi
  log "ceph up"
}

start_cinder() {
  local conf=$STATE/etc/cinder/cinder.conf mnt
  mnt=$STATE/cinder/mnt/$(printf '%s' "$NFS_SHARE" | md5sum | cut -d' ' -f1)
  mkdir -p "$mnt"
  grep -q " $mnt " /proc/mounts || mount --bind "$STATE/cinder/share" "$mnt"
  wsgi cinder-api 8776 /usr/bin/cinder-wsgi --pyargv "--config-file $conf"
  launch cinder-scheduler cinder-scheduler --config-file "$conf"
  # cinder-volume reports its pools at start, then every 60 s: start it only
  # once the scheduler listens, or volumes fail "No valid backend" for a minute
  sched_queue() { rabbitmqctl_q list_queues name 2>/dev/null | grep '^cinder-scheduler_fanout' >/dev/null; }
  until_ok 90 cinder-scheduler "$STATE/log/cinder-scheduler.log" sched_queue
  # scripts/openstack/ceph-retry.sh: `ceph mon dump` on each attach retried
  # past a ceph client race that failed attaches in CI
  mkdir -p "$STATE/bin"
  install -m 0755 "$HERE/openstack/ceph-retry.sh" "$STATE/bin/ceph"
  launch cinder-volume env PATH="$STATE/bin:$PATH" cinder-volume --config-file "$conf"
}

start_neutron() {
  # our ML2 driver, found by stevedore through its entry point
  cp "$HERE/openstack/cairn_fakebind.py" "$STATE/python/"
  mkdir -p "$STATE/python/cairn_fakebind-1.0.dist-info"
  printf 'Metadata-Version: 2.1\nName: cairn-fakebind\nVersion: 1.0\n' >"$STATE/python/cairn_fakebind-1.0.dist-info/METADATA"
  printf '[neutron.ml2.mechanism_drivers]\ncairn_fakebind = cairn_fakebind:FakeBindDriver\n' \
    >"$STATE/python/cairn_fakebind-1.0.dist-info/entry_points.txt"
  # Without agents nothing configures the SQLAlchemy mappers, and GET /ports
  # fails ("Port has no attribute port_forwardings"): do it before main().
  launch neutron-server env PYTHONPATH="$STATE/python" $PY -c 'import sys, neutron.cmd.eventlet
from neutron.db.migration.models import head
from sqlalchemy import orm
orm.configure_mappers()
from neutron.cmd.eventlet.server import main
sys.argv[0] = "neutron-server"; sys.exit(main())' --config-file "$STATE/etc/neutron/neutron.conf"
}

start_nova() {
  local conf=$STATE/etc/nova/nova.conf
  wsgi placement-api 8778 /usr/bin/placement-api --env "OS_PLACEMENT_CONFIG_DIR=$STATE/etc/placement"
  wsgi nova-api 8774 /usr/bin/nova-api-wsgi --env "OS_NOVA_CONFIG_DIR=$STATE/etc/nova"
  launch nova-conductor nova-conductor --config-file "$conf"
  launch nova-scheduler nova-scheduler --config-file "$conf"
  cp "$HERE/openstack/cairn_fakevirt.py" "$STATE/python/"
  # A nova-compute started with another driver or config (an older checkout,
  # the stock fake driver) is restarted, alone: the other services keep
  # running. Servers it knew stay in the database; the fake driver forgets
  # them, so only servers created after the restart can be snapshotted.
  local sum
  sum=$( (cat "$conf" "$STATE/python/cairn_fakevirt.py"; echo "$BY_ID") | sha256sum | cut -d' ' -f1)
  if alive nova-compute && [[ $(cat "$STATE/run/nova-compute.sum" 2>/dev/null) != "$sum" ]]; then
    log "nova-compute runs another driver or config: restarting it"
    stop nova-compute
  fi
  echo "$sum" >"$STATE/run/nova-compute.sum"
  alive nova-compute || drop_local_disks
  # the nova-compute package would pull libvirt; python3-nova has the service
  # Nova loads compute_driver as nova.virt.<name>: alias our module there
  # (after nova.cmd, which monkey-patches eventlet first)
  launch nova-compute env PYTHONPATH="$STATE/python" CAIRN_DISK_BY_ID_DIR="$BY_ID" $PY -c 'import sys, nova.cmd, cairn_fakevirt
sys.modules["nova.virt.cairn_fakevirt"] = cairn_fakevirt
from nova.cmd.compute import main
sys.argv[0] = "nova-compute"; sys.exit(main())' \
    --config-file "$conf" --log-file "$STATE/log/nova-compute.log"
}

# drop_local_disks: the local disks a stopped nova-compute left (the fake
# driver forgets its servers when it restarts): links, loop devices, files.
drop_local_disks() {
  local f d
  mkdir -p "$BY_ID"
  find "$BY_ID" -maxdepth 1 -type l -delete
  for f in "$STATE"/nova/instances/cairn-disk-*.raw; do
    [[ -e $f ]] || continue
    for d in $(losetup -j "$f" -O NAME -n); do losetup -d "$d" || true; done
    rm -f "$f"
    log "removed a stale local disk: $f"
  done
}

pools_ready() { local p; p=$(cinder get-pools 2>/dev/null) && [[ $p == *osl@nfs1#nfs1* && $p == *osl@rbd1#rbd1* ]]; }
compute_up() { [[ $(openstack compute service list --service nova-compute -f value -c State 2>/dev/null) == *up* &&
                  $(openstack hypervisor list -f value -c State 2>/dev/null) == *up* ]]; }

mkdir -p "$STATE/log"
install_packages
# Schema syncs, Keystone bootstrap and catalog take minutes on a busy box and
# change nothing on a cloud that was set up by the same package versions.
versions() { dpkg-query -W -f='${Package}=${Version} ' keystone glance-api cinder-api nova-api neutron-server placement-api 2>/dev/null; }
FRESH=1
[[ -f $STATE/setup-done && $(cat "$STATE/setup-done") == "$(versions)" ]] && FRESH=0
make_dirs
write_glance_conf; write_cinder_conf; write_neutron_conf; write_placement_conf; write_nova_conf
start_mariadb
start_rabbitmq
start_keystone
write_client_files
# shellcheck disable=SC1091
. "$STATE/openrc"
if (( FRESH )); then
  db_syncs
  log "databases ready"
fi
until_ok 120 keystone "$STATE/log/keystone.out" answers "http://$HOST:5000/v3"
if (( FRESH )); then
  CAIRN_OS_HOST=$HOST $PY "$HERE/openstack/bootstrap.py" catalog 2>>"$STATE/log/bootstrap.out" \
    || { tail -20 "$STATE/log/bootstrap.out" >&2; die "keystone catalog set-up failed"; }
  log "keystone catalog ready"
fi
launch glance-api glance-api --config-file "$STATE/etc/glance/glance-api.conf"
start_ceph
start_cinder
start_neutron
start_nova
for svc in glance-api:9292 cinder-api:8776 neutron-server:9696 placement-api:8778 nova-api:8774; do
  until_ok 180 "${svc%:*}" "$STATE/log/${svc%:*}.out" answers "http://$HOST:${svc#*:}"
done
log "every API answers"
until_ok 120 cinder-volume "$STATE/log/cinder-volume.log" pools_ready
for t in nfs rbd; do
  openstack volume type show "$t" >/dev/null 2>&1 ||
    openstack volume type create --public --property "volume_backend_name=${t}1" "$t" >/dev/null
done
log "cinder backends ready"
until_ok 180 nova-compute "$STATE/log/nova-compute.log" compute_up
CAIRN_OS_HOST=$HOST CAIRN_OS_ALT=$ALT $PY "$HERE/openstack/bootstrap.py" fixtures 2>>"$STATE/log/bootstrap.out" \
  || { tail -20 "$STATE/log/bootstrap.out" >&2; die "test fixtures set-up failed"; }
mon_steady
versions >"$STATE/setup-done"
log "openstack is up: . $STATE/cairn-test.env (cloud $CLOUD in $STATE/clouds.yaml)"
