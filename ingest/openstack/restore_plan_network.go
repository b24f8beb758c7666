package openstack

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

type neutronNet struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	ProjectID    string `json:"project_id"`
	PortSecurity *bool  `json:"port_security_enabled"`
	Status       string `json:"status"`
}

// planNetworks resolves --network choices, or the captured ports' networks
// (keeping each original fixed IP when it is free). A NIC on the network
// its captured port was on (same position) keeps the captured MAC address
// unless --new-mac: Neutron then must not have that MAC on any port of the
// network, and the restoring user must be allowed to set it.
//
// Who creates the port decides what happens when the server is deleted
// later: Nova deletes the ports it created itself and keeps (unbinds) every
// port it was handed (its preserve_on_delete, set for each requested
// port_id and never cleared; no compute API microversion changes that).
// So Nova creates every port it can: fixed IPs go in the server request,
// security groups are the server's. cairn creates a port itself only when
// Nova cannot: to set a MAC address, or on a network without port security
// when the server has security groups (Nova refuses such a server).
func (rs *restorer) planNetworks(ctx context.Context, pl *RestorePlan) error {
	if rs.opts.NoNetwork {
		return nil
	}
	choices := rs.opts.Networks
	var captured []PortDef
	if rs.def != nil {
		captured = rs.def.Ports
	}
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
	for i, c := range choices {
		n, err := rs.findNetwork(ctx, c.Network)
		if err != nil {
			return err
		}
		nic := PlannedNIC{NetworkID: n.ID, NetworkName: n.Name, FixedIP: c.FixedIP, PortSecurity: n.PortSecurity == nil || *n.PortSecurity}
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
		if i < len(captured) && captured[i].NetworkID == n.ID && captured[i].MAC != "" && !rs.opts.NewMAC {
			if err := rs.checkMAC(ctx, pl, n, captured[i].MAC); err != nil {
				return err
			}
			nic.MAC = captured[i].MAC
		}
		switch {
		case nic.MAC != "":
			nic.OwnPort = true
			nic.PortWhy = "cairn creates it to keep MAC address " + nic.MAC + "; Nova keeps such a port when the server is deleted (or pass --new-mac)"
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("the port on %s keeps MAC address %s; Nova does not delete a port it did not create, so it stays when the server is deleted (pass --new-mac to let Nova own the ports)", n.Name, nic.MAC))
		case !nic.PortSecurity && len(pl.SecurityGroups) > 0:
			nic.OwnPort = true
			nic.PortWhy = "cairn creates it without security groups (Nova refuses groups on a network without port security); Nova keeps it when the server is deleted"
		default:
			nic.PortWhy = "Nova creates it and deletes it with the server"
		}
		nic.DeletedWithServer = !nic.OwnPort
		pl.Networks = append(pl.Networks, nic)
	}
	// Nova refuses server-level security groups as soon as one requested
	// network lacks port security, even for ports handed to it: then the
	// groups go on ports cairn creates, all of them.
	noSec := false
	for _, n := range pl.Networks {
		noSec = noSec || !n.PortSecurity
	}
	if noSec && len(pl.SecurityGroups) > 0 {
		for i := range pl.Networks {
			if n := &pl.Networks[i]; !n.OwnPort {
				n.OwnPort, n.DeletedWithServer = true, false
				n.PortWhy = "cairn creates it with the security groups (Nova refuses groups for a server with a port without port security); Nova keeps it when the server is deleted"
			}
		}
	}
	return nil
}

// checkMAC makes sure the captured MAC address can be set on network n:
// no port of n holds it (the original server may still exist), and the
// restoring user may set MAC addresses there (Neutron's default policy
// create_port:mac_address: admins and the network's owner).
func (rs *restorer) checkMAC(ctx context.Context, pl *RestorePlan, n *neutronNet, mac string) error {
	var body struct {
		Ports []struct {
			ID          string `json:"id"`
			Name        string `json:"name"`
			DeviceID    string `json:"device_id"`
			DeviceOwner string `json:"device_owner"`
		} `json:"ports"`
	}
	q := "ports?network_id=" + url.QueryEscape(n.ID) + "&mac_address=" + url.QueryEscape(mac)
	if err := getJSON(ctx, rs.cloud.Network, q, &body); err != nil {
		return fmt.Errorf("look up MAC address %s on network %s: %s", mac, n.Name, apiMessage(err))
	}
	if len(body.Ports) > 0 {
		p := body.Ports[0]
		holder := "port " + p.ID
		if p.Name != "" {
			holder += " (" + p.Name + ")"
		}
		switch {
		case strings.HasPrefix(p.DeviceOwner, "compute:"):
			holder += " of server " + rs.serverLabel(ctx, p.DeviceID)
		case p.DeviceOwner != "":
			holder += " owned by " + p.DeviceOwner
		default:
			holder += ", attached to nothing"
		}
		return fmt.Errorf("MAC address %s of the original port on network %s is in use by %s: pass --new-mac to give the restored server new MAC addresses (or remove that port first)", mac, n.Name, holder)
	}
	if !rs.cloud.IsAdmin() && n.ProjectID != "" && n.ProjectID != pl.Project {
		return fmt.Errorf("keeping MAC address %s on network %s needs the admin role or the network's own project %s (Neutron policy create_port:mac_address): pass --new-mac, or restore as such a user", mac, n.Name, n.ProjectID)
	}
	return nil
}

// serverLabel is "NAME (ID)" when Nova shows the server to this user, else the ID.
func (rs *restorer) serverLabel(ctx context.Context, id string) string {
	var body struct {
		Server struct {
			Name string `json:"name"`
		} `json:"server"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "servers/"+url.PathEscape(id), &body); err != nil || body.Server.Name == "" {
		return id
	}
	return fmt.Sprintf("%s (%s)", body.Server.Name, id)
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
