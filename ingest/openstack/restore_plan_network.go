package openstack

import (
	"context"
	"fmt"
	"net/url"
)

type neutronNet struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	PortSecurity *bool  `json:"port_security_enabled"`
	Status       string `json:"status"`
}

// planNetworks resolves --network choices, or the captured ports' networks
// (keeping each original fixed IP when it is free).
func (rs *restorer) planNetworks(ctx context.Context, pl *RestorePlan) error {
	if rs.opts.NoNetwork {
		return nil
	}
	choices := rs.opts.Networks
	keepIPs := false
	if len(choices) == 0 && rs.def != nil {
		keepIPs = true
		for _, p := range rs.def.Ports {
			c := NetworkChoice{Network: p.NetworkID}
			if len(p.FixedIPs) > 0 {
				c.FixedIP = p.FixedIPs[0].IPAddress
			}
			choices = append(choices, c)
		}
	}
	if len(choices) == 0 {
		if rs.def == nil {
			return fmt.Errorf("restore point %s holds no server definition: pass --network NET (or --no-network)", rs.point.ID)
		}
		return nil
	}
	if rs.cloud.Network == nil {
		return fmt.Errorf("the cloud's catalog has no network (Neutron) endpoint; pass --no-network")
	}
	for _, c := range choices {
		n, err := rs.findNetwork(ctx, c.Network)
		if err != nil {
			return err
		}
		nic := PlannedNIC{NetworkID: n.ID, NetworkName: n.Name, FixedIP: c.FixedIP, PortSecurity: n.PortSecurity == nil || *n.PortSecurity}
		nic.OwnPort = true
		if !nic.PortSecurity {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("network %s has port security disabled: its port is created without security groups", n.Name))
		}
		if nic.FixedIP != "" {
			used, err := rs.ipInUse(ctx, n.ID, nic.FixedIP)
			if err != nil {
				return err
			}
			if used && keepIPs {
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("original address %s on %s is in use; Neutron picks another", nic.FixedIP, n.Name))
				nic.FixedIP = ""
			} else if used {
				return fmt.Errorf("--network %s=%s: the address is already in use on that network", c.Network, c.FixedIP)
			}
		}
		pl.Networks = append(pl.Networks, nic)
	}
	return nil
}

func (rs *restorer) findNetwork(ctx context.Context, idOrName string) (*neutronNet, error) {
	var one struct {
		Network neutronNet `json:"network"`
	}
	if err := getJSON(ctx, rs.cloud.Network, "networks/"+url.PathEscape(idOrName), &one); err == nil {
		return &one.Network, nil
	} else if !isNotFound(err) {
		return nil, fmt.Errorf("network %s: %s", idOrName, apiMessage(err))
	}
	var list struct {
		Networks []neutronNet `json:"networks"`
	}
	if err := getJSON(ctx, rs.cloud.Network, "networks?name="+url.QueryEscape(idOrName), &list); err != nil {
		return nil, fmt.Errorf("network %s: %s", idOrName, apiMessage(err))
	}
	switch len(list.Networks) {
	case 1:
		return &list.Networks[0], nil
	case 0:
		return nil, fmt.Errorf("network %q does not exist or is not visible to project %s: pass --network NET for a network it can use", idOrName, rs.cloud.ProjectID())
	}
	return nil, fmt.Errorf("network name %q is ambiguous: give its ID", idOrName)
}

func (rs *restorer) ipInUse(ctx context.Context, netID, ip string) (bool, error) {
	var body struct {
		Ports []struct {
			ID string `json:"id"`
		} `json:"ports"`
	}
	q := "ports?network_id=" + url.QueryEscape(netID) + "&fixed_ips=" + url.QueryEscape("ip_address="+ip)
	if err := getJSON(ctx, rs.cloud.Network, q, &body); err != nil {
		return false, fmt.Errorf("look up address %s: %s", ip, apiMessage(err))
	}
	return len(body.Ports) > 0, nil
}
