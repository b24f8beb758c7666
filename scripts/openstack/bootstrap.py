"""Idempotent set-up of the test cloud, in one Python process (each
`openstack` CLI call costs 1-2 s of start-up).

  bootstrap.py catalog   service users, services and endpoints
  bootstrap.py fixtures  what cairn's tests use (see openstack-up.sh header)

Reads OS_AUTH_URL, OS_PASSWORD (admin) and CAIRN_OS_* from the environment.
"""
import os
import sys
import time

from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client as ksclient

E = os.environ
HOST = E["CAIRN_OS_HOST"]


def admin_session(project="admin"):
    auth = v3.Password(auth_url=E["OS_AUTH_URL"], username="admin",
                       password=E["OS_PASSWORD"], project_name=project,
                       user_domain_name="Default", project_domain_name="Default")
    return session.Session(auth=auth)


def first(items):
    return items[0] if items else None


def catalog():
    ks = ksclient.Client(session=admin_session())
    service = first(ks.projects.list(name="service")) or ks.projects.create("service", "default")
    admin = first(ks.roles.list(name="admin"))
    svc_role = first(ks.roles.list(name="service")) or ks.roles.create("service")
    for name in ("glance", "cinder", "nova", "placement", "neutron"):
        user = first(ks.users.list(name=name)) or ks.users.create(
            name, domain="default", password=E["OS_PASSWORD"])
        ks.roles.grant(admin, user=user, project=service)
        ks.roles.grant(svc_role, user=user, project=service)  # marks service tokens
    endpoints = [("image", "glance", f"http://{HOST}:9292"),
                 ("volumev3", "cinderv3", f"http://{HOST}:8776/v3/%(project_id)s"),
                 ("compute", "nova", f"http://{HOST}:8774/v2.1"),
                 ("placement", "placement", f"http://{HOST}:8778"),
                 ("network", "neutron", f"http://{HOST}:9696")]
    for stype, sname, url in endpoints:
        svc = first(ks.services.list(type=stype)) or ks.services.create(sname, type=stype)
        for iface in ("public", "internal", "admin"):
            if not ks.endpoints.list(service=svc, interface=iface):
                ks.endpoints.create(svc, url, interface=iface, region="RegionOne")


def retry(fn, what, tries=30):
    for i in range(tries):
        try:
            return fn()
        except Exception as e:  # services still warming up
            if i == tries - 1:
                raise SystemExit(f"bootstrap: {what}: {e}")
            time.sleep(2)


def fixtures():
    from novaclient import client as novaclient
    from neutronclient.v2_0 import client as neutronclient
    from cinderclient import client as cinderclient

    sess = admin_session()
    ks = ksclient.Client(session=sess)
    admin_role = first(ks.roles.list(name="admin"))
    member = first(ks.roles.list(name="member")) or ks.roles.create("member")
    admin_user = first(ks.users.list(name="admin"))
    alt_name = E["CAIRN_OS_ALT"]
    alt = first(ks.projects.list(name=alt_name)) or ks.projects.create(alt_name, "default")
    alt_user = first(ks.users.list(name=alt_name)) or ks.users.create(
        alt_name, domain="default", password=E["OS_PASSWORD"], default_project=alt)
    ks.roles.grant(member, user=alt_user, project=alt)
    ks.roles.grant(admin_role, user=admin_user, project=alt)  # admin may restore into it
    admin_project = first(ks.projects.list(name="admin"))

    nova = novaclient.Client("2.79", session=sess)
    for name, vcpus, ram, disk in (("cairn.tiny", 1, 256, 1), ("cairn.small", 2, 512, 2)):
        if not [f for f in retry(nova.flavors.list, "nova flavors") if f.name == name]:
            nova.flavors.create(name, ram, vcpus, disk)
    for project in (admin_project, alt):
        retry(lambda: nova.quotas.update(project.id, instances=100, cores=400, ram=512000,
                                         key_pairs=1000), "nova quotas")
    cinder = cinderclient.Client("3.50", session=sess)
    for project in (admin_project, alt):
        retry(lambda: cinder.quotas.update(project.id, volumes=200, snapshots=200,
                                           gigabytes=4000, backups=0), "cinder quotas")

    neutron = neutronclient.Client(session=sess)
    for project in (admin_project, alt):
        neutron.update_quota(project.id, {"quota": {"network": 100, "subnet": 100,
                                                    "port": 1000, "security_group": 100}})
    nets = [("cairn-net", "10.66.0.0/24", True), ("cairn-net2", "10.67.0.0/24", True),
            ("cairn-nosec", "10.68.0.0/24", False)]
    for name, cidr, secure in nets:
        have = neutron.list_networks(name=name)["networks"]
        if have:
            net = have[0]
        else:
            net = neutron.create_network({"network": {
                "name": name, "shared": True, "port_security_enabled": secure,
                "provider:network_type": "vxlan"}})["network"]
        # .2-.127 for Neutron's own picks; tests that ask for a fixed IP use
        # .128-.254, so a random allocation can never take theirs
        pools = [{"start": cidr[:-4] + "2", "end": cidr[:-4] + "127"}]
        subnets = neutron.list_subnets(network_id=net["id"])["subnets"]
        if not subnets:
            neutron.create_subnet({"subnet": {"name": name + "-subnet", "network_id": net["id"],
                                              "ip_version": 4, "cidr": cidr, "enable_dhcp": False,
                                              "allocation_pools": pools}})
        elif subnets[0]["allocation_pools"] != pools:  # state from an older script
            neutron.update_subnet(subnets[0]["id"], {"subnet": {"allocation_pools": pools}})


if __name__ == "__main__":
    {"catalog": catalog, "fixtures": fixtures}[sys.argv[1]]()
