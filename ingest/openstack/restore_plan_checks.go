package openstack

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
)

// checkName refuses a server name already used in the project.
func (rs *restorer) checkName(ctx context.Context, pl *RestorePlan) error {
	var body struct {
		Servers []struct {
			ID string `json:"id"`
		} `json:"servers"`
	}
	q := "servers?name=" + url.QueryEscape("^"+regexp.QuoteMeta(pl.ServerName)+"$")
	if err := getJSON(ctx, rs.cloud.Compute, q, &body); err != nil {
		return fmt.Errorf("look up server name %q: %s", pl.ServerName, apiMessage(err))
	}
	if len(body.Servers) > 0 {
		return fmt.Errorf("a server named %q already exists in project %s (%s): pass --name NEW", pl.ServerName, pl.Project, body.Servers[0].ID)
	}
	pl.Checks = append(pl.Checks, fmt.Sprintf("name %q is free", pl.ServerName))
	return nil
}

// checkQuotas compares what the restore needs with the project's limits.
func (rs *restorer) checkQuotas(ctx context.Context, pl *RestorePlan) error {
	nova, err := absoluteLimits(ctx, rs.cloud.Compute, "compute")
	if err != nil {
		return err
	}
	cinder, err := absoluteLimits(ctx, rs.cloud.Volume, "volume")
	if err != nil {
		return err
	}
	gb := 0
	for _, v := range pl.Volumes {
		gb += v.SizeGB
	}
	n, c := nova, cinder
	checks := []struct {
		what            string
		need, max, used int
	}{
		{"instances", 1, n["maxTotalInstances"], n["totalInstancesUsed"]},
		{"cores", pl.Flavor.VCPUs, n["maxTotalCores"], n["totalCoresUsed"]},
		{"RAM (MiB)", pl.Flavor.RAM, n["maxTotalRAMSize"], n["totalRAMUsed"]},
		{"volumes", len(pl.Volumes), c["maxTotalVolumes"], c["totalVolumesUsed"]},
		{"volume gigabytes", gb, c["maxTotalVolumeGigabytes"], c["totalGigabytesUsed"]},
	}
	var short []string
	for _, q := range checks {
		if q.max < 0 {
			pl.Checks = append(pl.Checks, fmt.Sprintf("quota %s: unlimited", q.what))
			continue
		}
		pl.Checks = append(pl.Checks, fmt.Sprintf("quota %s: need %d, %d of %d used", q.what, q.need, q.used, q.max))
		if q.used+q.need > q.max {
			short = append(short, fmt.Sprintf("%s (need %d, %d of %d used)", q.what, q.need, q.used, q.max))
		}
	}
	if len(short) > 0 {
		return fmt.Errorf("quota exceeded in project %s for %s: free some or ask for a higher quota", pl.Project, strings.Join(short, ", "))
	}
	return nil
}

func keys(m map[string]bool) string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// absoluteLimits reads a service's absolute limits (Nova's and Cinder's
// GET /limits answer alike).
func absoluteLimits(ctx context.Context, sc *gophercloud.ServiceClient, what string) (map[string]int, error) {
	var body struct {
		Limits struct {
			Absolute map[string]int `json:"absolute"`
		} `json:"limits"`
	}
	if err := getJSON(ctx, sc, "limits", &body); err != nil {
		return nil, fmt.Errorf("read %s limits: %s", what, apiMessage(err))
	}
	return body.Limits.Absolute, nil
}
