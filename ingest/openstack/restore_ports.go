package openstack

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// networks builds Nova's networks list in the planned order: network plus
// fixed IP for the ports Nova creates (and deletes with the server), and
// the ports cairn must create itself (see planNetworks), created here.
func (rs *restorer) networks(ctx context.Context, pl *RestorePlan) (any, error) {
	if len(pl.Networks) == 0 {
		return "none", nil
	}
	var out []map[string]any
	for i, n := range pl.Networks {
		if !n.OwnPort {
			m := map[string]any{"uuid": n.NetworkID}
			if n.FixedIP != "" {
				m["fixed_ip"] = n.FixedIP
			}
			out = append(out, m)
			continue
		}
		id, err := rs.createPort(ctx, pl, i, n)
		if err != nil {
			return nil, err
		}
		out = append(out, map[string]any{"port": id})
	}
	return out, nil
}

// createPort creates the port of NIC i: with the captured MAC address,
// and without security groups on a network without port security.
func (rs *restorer) createPort(ctx context.Context, pl *RestorePlan, i int, n PlannedNIC) (string, error) {
	port := map[string]any{"network_id": n.NetworkID, "name": fmt.Sprintf("%s-port%d", pl.ServerName, i),
		"description": "created by cairn restore of " + rs.point.ID}
	switch {
	case !n.PortSecurity:
		port["port_security_enabled"] = false
	case len(pl.SecurityGroups) > 0:
		var sgs []string
		for _, sg := range pl.SecurityGroups {
			sgs = append(sgs, sg.ID)
		}
		port["security_groups"] = sgs
	}
	if n.FixedIP != "" {
		port["fixed_ips"] = []map[string]string{{"ip_address": n.FixedIP}}
	}
	if n.MAC != "" {
		port["mac_address"] = n.MAC
	}
	var body struct {
		Port struct {
			ID string `json:"id"`
		} `json:"port"`
	}
	if err := postJSON(ctx, rs.cloud.Network, "ports", map[string]any{"port": port}, &body); err != nil {
		switch st := httpStatus(err); {
		case n.MAC != "" && (st == http.StatusForbidden || st == http.StatusUnauthorized || (st == http.StatusNotFound && strings.Contains(apiMessage(err), "mac_address"))):
			return "", fmt.Errorf("create port on network %s with the original MAC address %s: Neutron's policy (create_port:mac_address) lets only admins and the network's owner set a MAC address: pass --new-mac, or restore as such a user: %s", n.NetworkName, n.MAC, apiMessage(err))
		case n.MAC != "" && st == http.StatusConflict && strings.Contains(apiMessage(err), "MacAddressInUse"):
			return "", fmt.Errorf("create port on network %s: the original MAC address %s was taken since the plan was made: pass --new-mac: %s", n.NetworkName, n.MAC, apiMessage(err))
		}
		return "", fmt.Errorf("create port on network %s: %s", n.NetworkName, apiMessage(err))
	}
	id := body.Port.ID
	rs.undo.add("port", id, n.NetworkName, false, func(ctx context.Context) error {
		return deleteURL(ctx, rs.cloud.Network, "ports/"+id)
	})
	rs.ownPorts[id] = true
	what := "on " + n.NetworkName
	if n.MAC != "" {
		what += " with MAC address " + n.MAC
	}
	if !n.PortSecurity {
		what = "without security groups " + what
	}
	rs.created("port", id, what)
	return id, nil
}

type serverPort struct {
	ID        string    `json:"id"`
	NetworkID string    `json:"network_id"`
	MAC       string    `json:"mac_address"`
	FixedIPs  []FixedIP `json:"fixed_ips"`
}

func (rs *restorer) portsOf(ctx context.Context, serverID string) ([]serverPort, error) {
	var body struct {
		Ports []serverPort `json:"ports"`
	}
	err := getJSON(ctx, rs.cloud.Network, "ports?device_id="+url.QueryEscape(serverID), &body)
	return body.Ports, err
}

// recordPorts lists the server's ports in the result, with who created
// them and so whether Nova deletes them with the server.
func (rs *restorer) recordPorts(ctx context.Context, pl *RestorePlan, serverID string) error {
	if rs.cloud.Network == nil || len(pl.Networks) == 0 {
		return nil
	}
	ports, err := rs.portsOf(ctx, serverID)
	if err != nil {
		return fmt.Errorf("list the ports of server %s: %s", serverID, apiMessage(err))
	}
	names := map[string]string{}
	for _, n := range pl.Networks {
		names[n.NetworkID] = n.NetworkName
	}
	for _, p := range ports {
		cp := CreatedPort{ID: p.ID, Network: names[p.NetworkID], MAC: p.MAC, CreatedBy: "nova", DeletedWithServer: true}
		if cp.Network == "" {
			cp.Network = p.NetworkID
		}
		for _, ip := range p.FixedIPs {
			cp.IPs = append(cp.IPs, ip.IPAddress)
		}
		if rs.ownPorts[p.ID] {
			cp.CreatedBy, cp.DeletedWithServer = "cairn", false
		}
		rs.result.Ports = append(rs.result.Ports, cp)
	}
	return nil
}

// deletePortsOf removes the ports still bound to a server cairn created
// and has just deleted (on rollback): Nova deletes the ports it created,
// but a failed build can leave one behind.
func (rs *restorer) deletePortsOf(ctx context.Context, serverID string) error {
	if rs.cloud.Network == nil {
		return nil
	}
	ports, err := rs.portsOf(ctx, serverID)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if err := deleteURL(ctx, rs.cloud.Network, "ports/"+p.ID); err != nil {
			return fmt.Errorf("port %s of the deleted server: %w", p.ID, err)
		}
	}
	return nil
}
