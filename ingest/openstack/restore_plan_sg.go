package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
)

type neutronSG struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
}

// planSecurityGroups resolves the groups in the target project:
// --security-group, or the captured ones (same ID when the project is the
// same, else by name). A captured group that the target project lacks
// (deleted since, or another project) is recreated from its captured rules.
func (rs *restorer) planSecurityGroups(ctx context.Context, pl *RestorePlan) error {
	if rs.cloud.Network == nil {
		return nil
	}
	var body struct {
		SGs []neutronSG `json:"security_groups"`
	}
	if err := getJSON(ctx, rs.cloud.Network, "security-groups?project_id="+url.QueryEscape(pl.Project), &body); err != nil {
		return fmt.Errorf("list security groups: %s", apiMessage(err))
	}
	find := func(idOrName string) (neutronSG, int) {
		var hits []neutronSG
		for _, sg := range body.SGs {
			if sg.ID == idOrName {
				return sg, 1
			}
			if sg.Name == idOrName {
				hits = append(hits, sg)
			}
		}
		if len(hits) == 1 {
			return hits[0], 1
		}
		return neutronSG{}, len(hits)
	}
	seen := map[string]bool{}
	use := func(sg neutronSG, sourceID, why string) {
		if !seen[sg.ID] {
			seen[sg.ID] = true
			pl.SecurityGroups = append(pl.SecurityGroups, PlannedSG{ID: sg.ID, Name: sg.Name, Action: "use", Why: why, sourceID: sourceID})
		}
	}
	if len(rs.opts.SecurityGroups) > 0 {
		for _, w := range rs.opts.SecurityGroups {
			sg, n := find(w)
			switch n {
			case 0:
				return fmt.Errorf("security group %q does not exist in project %s: create it first or pass another --security-group", w, pl.Project)
			case 1:
				use(sg, "", "--security-group")
			default:
				return fmt.Errorf("security group name %q is ambiguous in project %s: give its ID", w, pl.Project)
			}
		}
		return nil
	}
	if rs.def == nil {
		return nil
	}
	sameProject := rs.def.Server.ProjectID == pl.Project
	for i := range rs.def.SecurityGroups {
		c := &rs.def.SecurityGroups[i]
		if sameProject && c.ID != "" {
			if sg, n := find(c.ID); n == 1 {
				use(sg, c.ID, "captured group")
				continue
			}
		} else if sg, n := find(c.Name); n == 1 {
			use(sg, c.ID, "captured group, by name")
			continue
		} else if n > 1 {
			return fmt.Errorf("security group name %q is ambiguous in project %s: pass --security-group ID", c.Name, pl.Project)
		}
		if c.ID == "" { // only the name is known (captured through Nova): nothing to recreate from
			return fmt.Errorf("security group %q does not exist in project %s and the restore point holds no rules for it: create it first or pass --security-group", c.Name, pl.Project)
		}
		why := fmt.Sprintf("group %s (%s) no longer exists in this project", c.Name, c.ID)
		if !sameProject {
			why = fmt.Sprintf("project %s has no group named %s", pl.Project, c.Name)
		}
		psg := PlannedSG{Name: c.Name, Action: "create", Rules: len(c.Rules), Why: why, source: c, sourceID: c.ID}
		pl.SecurityGroups = append(pl.SecurityGroups, psg)
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("security group %s: %s; it is recreated from its %d captured rules", c.Name, why, len(c.Rules)))
	}
	// rules that point at other groups: those must be in the plan or exist
	known := map[string]bool{}
	for _, sg := range pl.SecurityGroups {
		known[sg.sourceID], known[sg.ID] = true, true
	}
	for _, sg := range body.SGs {
		known[sg.ID] = true
	}
	for i := range pl.SecurityGroups {
		psg := &pl.SecurityGroups[i]
		if psg.Action != "create" {
			continue
		}
		rules, notes := recreatableRules(psg.source, known)
		psg.rules, psg.Rules = rules, len(rules)
		for _, n := range notes {
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("security group %s: %s", psg.Name, n))
		}
	}
	return nil
}

// sgRule is the part of a Neutron security group rule that defines it.
type sgRule struct {
	Direction          string  `json:"direction"`
	Ethertype          string  `json:"ethertype"`
	Protocol           *string `json:"protocol"`
	PortMin            *int    `json:"port_range_min"`
	PortMax            *int    `json:"port_range_max"`
	RemoteIP           *string `json:"remote_ip_prefix"`
	RemoteGroup        *string `json:"remote_group_id"`
	RemoteAddressGroup *string `json:"remote_address_group_id"`
	Description        string  `json:"description"`
}

// key identifies a rule by what it allows (Neutron refuses duplicates).
func (r sgRule) key() string {
	s := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	i := func(p *int) string {
		if p == nil {
			return ""
		}
		return fmt.Sprint(*p)
	}
	return r.Direction + "|" + r.Ethertype + "|" + s(r.Protocol) + "|" + i(r.PortMin) + "|" + i(r.PortMax) + "|" + s(r.RemoteIP) + "|" + s(r.RemoteGroup)
}

// recreatableRules decodes a captured group's rules; rules that reference
// a group neither recreated nor present, or an address group, are left out
// with a note (leaving out an allow rule only narrows access).
func recreatableRules(c *SecurityGroup, known map[string]bool) ([]sgRule, []string) {
	var out []sgRule
	var notes []string
	for _, raw := range c.Rules {
		var r sgRule
		if err := json.Unmarshal(raw, &r); err != nil || r.Direction == "" {
			notes = append(notes, fmt.Sprintf("a captured rule does not decode and is left out: %s", raw))
			continue
		}
		switch {
		case r.RemoteAddressGroup != nil && *r.RemoteAddressGroup != "":
			notes = append(notes, fmt.Sprintf("the %s rule from address group %s is left out (address groups are not restored)", r.Direction, *r.RemoteAddressGroup))
			continue
		case r.RemoteGroup != nil && *r.RemoteGroup != "" && *r.RemoteGroup != c.ID && !known[*r.RemoteGroup]:
			notes = append(notes, fmt.Sprintf("the %s rule from group %s is left out: that group is not in this project or the restore", r.Direction, *r.RemoteGroup))
			continue
		}
		out = append(out, r)
	}
	return out, notes
}
