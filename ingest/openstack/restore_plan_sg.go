package openstack

import (
	"context"
	"fmt"
	"net/url"
)

type neutronSG struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	ProjectID string `json:"project_id"`
}

// planSecurityGroups resolves the groups in the target project: --security-group,
// or the captured ones (same ID when the project is the same, else by name).
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
	find := func(idOrName string) (neutronSG, error) {
		var hits []neutronSG
		for _, sg := range body.SGs {
			if sg.ID == idOrName {
				return sg, nil
			}
			if sg.Name == idOrName {
				hits = append(hits, sg)
			}
		}
		switch len(hits) {
		case 1:
			return hits[0], nil
		case 0:
			return neutronSG{}, fmt.Errorf("security group %q does not exist in project %s", idOrName, pl.Project)
		}
		return neutronSG{}, fmt.Errorf("security group name %q is ambiguous in project %s: give its ID", idOrName, pl.Project)
	}
	var want []string
	switch {
	case len(rs.opts.SecurityGroups) > 0:
		want = rs.opts.SecurityGroups
	case rs.def != nil:
		for _, sg := range rs.def.SecurityGroups {
			if sg.ID != "" && rs.def.Server.ProjectID == pl.Project {
				want = append(want, sg.ID)
			} else {
				want = append(want, sg.Name)
			}
		}
	}
	seen := map[string]bool{}
	for _, w := range want {
		sg, err := find(w)
		if err != nil {
			return fmt.Errorf("%w: create it first or pass --security-group", err)
		}
		if !seen[sg.ID] {
			seen[sg.ID] = true
			pl.SecurityGroups = append(pl.SecurityGroups, PlannedSG{ID: sg.ID, Name: sg.Name})
		}
	}
	return nil
}
