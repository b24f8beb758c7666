# shellcheck shell=bash
# Configuration files of every service, written from $STATE, $HOST and $PASS
# only, so rewriting them on every run of openstack-up.sh is idempotent.

dburl() { echo "mysql+pymysql://openstack:$PASS@$HOST:3306/$1?charset=utf8"; }

# keystonemiddleware section of an API that validates tokens.
authtoken_section() {
  cat <<EOT
[keystone_authtoken]
www_authenticate_uri = http://$HOST:5000
auth_url = http://$HOST:5000
auth_type = password
user_domain_name = Default
project_domain_name = Default
project_name = service
username = $1
password = $PASS
EOT
}

# keystoneauth options of a service-to-service client (no section header).
client_opts() {
  cat <<EOT
auth_url = http://$HOST:5000
auth_type = password
user_domain_name = Default
project_domain_name = Default
project_name = service
username = $1
password = $PASS
region_name = RegionOne
EOT
}

write_mariadb_conf() {
  cat >"$STATE/etc/my.cnf" <<EOT
[mysqld]
user = mysql
datadir = $STATE/mysql
socket = $STATE/mysql-run/mysqld.sock
pid-file = $STATE/mysql-run/mysqld.pid
log-error = $STATE/mysql-run/mariadb.log
bind-address = $HOST
port = 3306
skip-name-resolve
skip-log-bin
character-set-server = utf8
collation-server = utf8_general_ci
max_connections = 1000
# a throw-away test cloud: speed over durability
innodb_flush_log_at_trx_commit = 0
innodb_doublewrite = 0
innodb_buffer_pool_size = 256M
EOT
}

write_rabbitmq_env() {
  cat >"$STATE/rabbitmq/env" <<EOT
export RABBITMQ_NODENAME=rabbit@localhost RABBITMQ_NODE_IP_ADDRESS=$HOST
export RABBITMQ_MNESIA_BASE=$STATE/rabbitmq/mnesia RABBITMQ_LOG_BASE=$STATE/log/rabbitmq
export RABBITMQ_PID_FILE=$STATE/rabbitmq/rabbit.pid
export ERL_EPMD_ADDRESS=$HOST HOME=$STATE/rabbitmq
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOT
}

write_keystone_conf() {
  cat >"$STATE/etc/keystone/keystone.conf" <<EOT
[DEFAULT]
log_file = $STATE/log/keystone.log
[database]
connection = $(dburl keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
EOT
}

write_glance_conf() {
  cat >"$STATE/etc/glance/glance-api.conf" <<EOT
[DEFAULT]
bind_host = $HOST
bind_port = 9292
workers = 1
log_file = $STATE/log/glance-api.log
node_staging_uri = file://$STATE/glance/staging
[database]
connection = $(dburl glance)
[glance_store]
stores = file,http
default_store = file
filesystem_store_datadir = $STATE/glance/images
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $STATE/lock/glance
$(authtoken_section glance)
EOT
}

write_cinder_conf() {
  cat >"$STATE/etc/cinder/cinder.conf" <<EOT
[DEFAULT]
# fixed host name: pools are osl@nfs1#nfs1 and osl@rbd1#rbd1
host = osl
my_ip = $HOST
state_path = $STATE/cinder/state
log_dir = $STATE/log
auth_strategy = keystone
transport_url = rabbit://guest:guest@$HOST:5672/
api_paste_config = /etc/cinder/api-paste.ini
rootwrap_config = /etc/cinder/rootwrap.conf
glance_api_servers = http://$HOST:9292
image_conversion_dir = $STATE/cinder/conversion
enable_force_upload = true
enabled_backends = nfs1,rbd1
default_volume_type = rbd
[database]
connection = $(dburl cinder)
[oslo_concurrency]
lock_path = $STATE/lock/cinder
[oslo_messaging_notifications]
driver = noop
$(authtoken_section cinder)
[nova]
$(client_opts nova)

[nfs1]
# a plain directory bind-mounted where the NFS driver expects its share
volume_backend_name = nfs1
volume_driver = cinder.volume.drivers.nfs.NfsDriver
nfs_shares_config = $STATE/etc/cinder/nfs_shares
nfs_mount_point_base = $STATE/cinder/mnt
nfs_snapshot_support = true
nas_secure_file_operations = false
nas_secure_file_permissions = false
nfs_sparsed_volumes = true
nfs_qcow2_volumes = false

[rbd1]
# one-node Ceph: the backend that snapshots in-use volumes
volume_backend_name = rbd1
volume_driver = cinder.volume.drivers.rbd.RBDDriver
rbd_pool = volumes
rbd_ceph_conf = $STATE/ceph/ceph.conf
EOT
  echo "$NFS_SHARE" >"$STATE/etc/cinder/nfs_shares"
}

write_ceph_conf() {
  cat >"$STATE/ceph/ceph.conf" <<EOT
[global]
fsid = $(cat "$STATE/ceph/fsid")
mon_host = v1:$HOST:6789
public_network = $HOST/8
ms_bind_ipv6 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
run_dir = $STATE/ceph/run
admin_socket = $STATE/ceph/run/\$name.asok
log_file = $STATE/ceph/log/\$name.log
mon_data = $STATE/ceph/mon/\$id
osd_data = $STATE/ceph/osd\$id
mgr_data = $STATE/ceph/mgr/\$id
osd_objectstore = bluestore
# outside osd_data: BlueStore puts a symlink named "block" there
bluestore_block_path = $STATE/ceph/osd\$id.block
bluestore_block_create = true
bluestore_block_size = ${CAIRN_OS_CEPH_GB:-40}G
osd_memory_target = 1073741824
EOT
}

write_neutron_conf() {
  cat >"$STATE/etc/neutron/neutron.conf" <<EOT
[DEFAULT]
bind_host = $HOST
bind_port = 9696
core_plugin = ml2
service_plugins = router
auth_strategy = keystone
transport_url = rabbit://guest:guest@$HOST:5672/
api_workers = 1
rpc_workers = 0
rpc_state_report_workers = 0
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
log_file = $STATE/log/neutron-server.log
api_paste_config = /etc/neutron/api-paste.ini
[database]
connection = $(dburl neutron)
[oslo_concurrency]
lock_path = $STATE/lock/neutron
$(authtoken_section neutron)
[nova]
$(client_opts nova)
[ml2]
# vxlan tenant networks need no agent at the API; cairn_fakebind (ours, in
# scripts/openstack/) binds every port so Nova can boot servers on networks
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = cairn_fakebind
extension_drivers = port_security
[ml2_type_flat]
flat_networks = *
[ml2_type_vxlan]
vni_ranges = 1:10000
[securitygroup]
firewall_driver = noop
EOT
}

write_placement_conf() {
  cat >"$STATE/etc/placement/placement.conf" <<EOT
[DEFAULT]
log_file = $STATE/log/placement.log
[placement_database]
connection = $(dburl placement)
[api]
auth_strategy = keystone
$(authtoken_section placement)
EOT
}

write_nova_conf() {
  ln -sf /etc/nova/api-paste.ini "$STATE/etc/nova/api-paste.ini"
  cat >"$STATE/etc/nova/nova.conf" <<EOT
[DEFAULT]
host = osl
my_ip = $HOST
state_path = $STATE/nova
instances_path = $STATE/nova/instances
log_dir = $STATE/log
transport_url = rabbit://guest:guest@$HOST:5672/
# in-memory hypervisor: servers go ACTIVE, Cinder attachments are real.
# Nova's stock fake driver never uploads image snapshots; ours (a subclass,
# scripts/openstack/cairn_fakevirt.py) uploads the base image's bytes, which
# is what an untouched image-backed root disk holds.
compute_driver = $NOVA_COMPUTE_DRIVER
rootwrap_config = /etc/nova/rootwrap.conf
[api]
auth_strategy = keystone
[api_database]
connection = $(dburl nova_api)
[database]
connection = $(dburl nova)
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 10
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[oslo_concurrency]
lock_path = $STATE/lock/nova
[oslo_messaging_notifications]
driver = noop
[vnc]
enabled = false
[glance]
api_servers = http://$HOST:9292
[placement]
$(client_opts placement)
[neutron]
$(client_opts neutron)
[cinder]
os_region_name = RegionOne
$(client_opts nova)
[service_user]
# Cinder lets only service tokens delete attachments that name a server
send_service_user_token = true
$(client_opts nova)
$(authtoken_section nova)
EOT
}
