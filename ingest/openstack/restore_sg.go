package openstack

import (
	"context"
	"fmt"
	"net/url"
)

// createSecurityGroups recreates the planned groups the target project
// lacks, with the captured rules (references to captured groups point at
// their counterparts here), and records them for rollback. The groups'
// new IDs go into the plan, for the ports and the server.
func (rs *restorer) createSecurityGroups(ctx context.Context, pl *RestorePlan) error {
	idMap := map[string]string{}
	for i := range pl.SecurityGroups {
		psg := &pl.SecurityGroups[i]
		if psg.Action != "create" {
			if psg.sourceID != "" {
				idMap[psg.sourceID] = psg.ID
			}
			continue
		}
		sg := map[string]any{"name": psg.Name, "description": psg.source.Description}
		var body struct {
			SG struct {
				ID    string     `json:"id"`
				Rules []sgRuleID `json:"security_group_rules"`
			} `json:"security_group"`
		}
		if err := postJSON(ctx, rs.cloud.Network, "security-groups", map[string]any{"security_group": sg}, &body); err != nil {
			return fmt.Errorf("recreate security group %s: %s", psg.Name, apiMessage(err))
		}
		id := body.SG.ID
		rs.undo.add("security group", id, psg.Name, false, func(ctx context.Context) error {
			return deleteURL(ctx, rs.cloud.Network, "security-groups/"+id)
		})
		psg.ID, idMap[psg.sourceID] = id, id
		psg.defaults = body.SG.Rules
		rs.created("security group", id, psg.Name)
	}
	for i := range pl.SecurityGroups {
		psg := &pl.SecurityGroups[i]
		if psg.Action != "create" {
			continue
		}
		n, err := rs.setRules(ctx, psg, idMap)
		if err != nil {
			return err
		}
		rs.result.Groups = append(rs.result.Groups, CreatedSG{ID: psg.ID, Name: psg.Name, Rules: n})
	}
	return nil
}

// sgRuleID is a rule as Neutron returns it.
type sgRuleID struct {
	ID string `json:"id"`
	sgRule
}

// setRules makes the new group's rules exactly the captured ones: the
// rules Neutron adds to a new group stay when captured, go otherwise.
func (rs *restorer) setRules(ctx context.Context, psg *PlannedSG, idMap map[string]string) (int, error) {
	rules := append([]sgRule(nil), psg.rules...)
	want := map[string]bool{}
	for i := range rules {
		if g := rules[i].RemoteGroup; g != nil && *g != "" {
			if to, ok := idMap[*g]; ok {
				rules[i].RemoteGroup = &to
			}
		}
		want[rules[i].key()] = true
	}
	have := map[string]bool{}
	for _, r := range psg.defaults {
		if want[r.key()] {
			have[r.key()] = true
			continue
		}
		if err := deleteURL(ctx, rs.cloud.Network, "security-group-rules/"+url.PathEscape(r.ID)); err != nil {
			return 0, fmt.Errorf("security group %s: remove default rule %s: %s", psg.Name, r.ID, apiMessage(err))
		}
	}
	for _, r := range rules {
		if have[r.key()] {
			continue
		}
		have[r.key()] = true
		body := map[string]any{"security_group_id": psg.ID, "direction": r.Direction, "ethertype": r.Ethertype}
		if r.Protocol != nil {
			body["protocol"] = *r.Protocol
		}
		if r.PortMin != nil {
			body["port_range_min"] = *r.PortMin
		}
		if r.PortMax != nil {
			body["port_range_max"] = *r.PortMax
		}
		if r.RemoteIP != nil {
			body["remote_ip_prefix"] = *r.RemoteIP
		}
		if r.RemoteGroup != nil && *r.RemoteGroup != "" {
			body["remote_group_id"] = *r.RemoteGroup
		}
		if r.Description != "" {
			body["description"] = r.Description
		}
		if err := postJSON(ctx, rs.cloud.Network, "security-group-rules", map[string]any{"security_group_rule": body}, nil); err != nil {
			return 0, fmt.Errorf("security group %s: add rule %s: %s", psg.Name, r.key(), apiMessage(err))
		}
	}
	return len(have), nil
}
