"""ML2 mechanism driver for the test cloud: binds every port at once.

The test cloud runs neutron-server without agents, so no stock mechanism
driver can bind a port, every binding fails, and Nova refuses to boot a
server on a network. Nova's fake virt driver plugs nothing, so a binding
is all it needs. Loaded through the entry point that openstack-up.sh
writes beside this file (cairn_fakebind-1.0.dist-info).
"""
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins.ml2 import api


class FakeBindDriver(api.MechanismDriver):
    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: False},
                                status="ACTIVE")
            return
