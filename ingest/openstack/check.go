package openstack

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
)

// CheckReport is what `cairn openstack check` prints.
type CheckReport struct {
	AuthURL    string            `json:"auth_url"`
	Source     string            `json:"source"`
	User       string            `json:"user"`
	UserDomain string            `json:"user_domain"`
	Project    string            `json:"project,omitempty"`
	ProjectID  string            `json:"project_id,omitempty"`
	System     bool              `json:"system_scope"`
	Roles      []string          `json:"roles"`
	Region     string            `json:"region,omitempty"`
	Expires    time.Time         `json:"token_expires"`
	Services   []ServiceCheck    `json:"services"`
	Quota      map[string]string `json:"volume_quota,omitempty"`
	Can        []string          `json:"can"`
	Cannot     []string          `json:"cannot,omitempty"`
	Problems   []string          `json:"problems,omitempty"`
}

// ServiceCheck is one service of the catalog and whether it answered.
type ServiceCheck struct {
	Type      string   `json:"type"`
	Name      string   `json:"name"`
	Endpoints []string `json:"endpoints"` // "interface region url"
	Used      string   `json:"used,omitempty"`
	Versions  string   `json:"versions,omitempty"`
	OK        bool     `json:"ok"`
	Error     string   `json:"error,omitempty"`
}

// Check probes every service cairn uses with a harmless request and
// reports what the credentials can see and do.
func (cl *Cloud) Check(ctx context.Context) *CheckReport {
	r := &CheckReport{AuthURL: cl.AuthURL(), Source: cl.Source, User: cl.User.Name, UserDomain: cl.User.Domain.Name,
		System: cl.System, Roles: cl.Roles, Region: cl.Region, Expires: cl.Token.ExpiresAt}
	if cl.Project != nil {
		r.Project, r.ProjectID = cl.Project.Name, cl.Project.ID
	}
	sort.Strings(r.Roles)
	probes := []struct {
		typ, what string
		sc        *gophercloud.ServiceClient
		path      string
	}{
		{"identity", "Keystone", cl.Identity, "auth/projects"},
		{"compute", "Nova", cl.Compute, "servers?limit=1"},
		{"volumev3", "Cinder v3", cl.Volume, "volumes?limit=1"},
		{"image", "Glance", cl.Image, "images?limit=1"},
		{"network", "Neutron", cl.Network, "networks?limit=1"},
	}
	ok := map[string]bool{}
	for _, p := range probes {
		sc := ServiceCheck{Type: p.typ, Name: p.what}
		for _, e := range cl.Catalog {
			if e.Type == p.typ || (p.typ == "volumev3" && e.Type == "block-storage") {
				for _, ep := range e.Endpoints {
					sc.Endpoints = append(sc.Endpoints, fmt.Sprintf("%s %s %s", ep.Interface, ep.Region, ep.URL))
				}
			}
		}
		if p.sc == nil {
			sc.Error = "not in the catalog (for this region and interface)"
			if e := cl.ServiceErrors[p.typ]; e != "" && len(sc.Endpoints) > 0 {
				sc.Error = "endpoint unusable: " + e
			}
			r.Services = append(r.Services, sc)
			continue
		}
		sc.Used = p.sc.ResourceBaseURL()
		var out map[string]any
		if err := getJSON(ctx, p.sc, p.path, &out); err != nil {
			sc.Error = apiMessage(err)
		} else {
			sc.OK = true
			ok[p.typ] = true
		}
		sc.Versions = cl.versions(ctx, p.typ)
		r.Services = append(r.Services, sc)
	}
	if cl.Volume != nil && cl.ProjectID() != "" {
		var b struct {
			Q map[string]any `json:"quota_set"`
		}
		if err := getJSON(ctx, cl.Volume, "os-quota-sets/"+cl.ProjectID()+"?usage=true", &b); err == nil {
			r.Quota = map[string]string{}
			for _, k := range []string{"snapshots", "volumes", "gigabytes"} {
				if q, ok := decodeQuota(b.Q[k]); ok {
					r.Quota[k] = fmt.Sprintf("%d used, %d reserved, limit %d", q.InUse, q.Reserved, q.Limit)
				}
			}
		}
	}
	cl.judge(r, ok)
	return r
}

func (cl *Cloud) judge(r *CheckReport, ok map[string]bool) {
	can := func(cond bool, what, why string) {
		if cond {
			r.Can = append(r.Can, what)
		} else {
			r.Cannot = append(r.Cannot, what+": "+why)
		}
	}
	can(ok["compute"], "list servers and read their definitions", "Nova did not answer")
	why := "needs the admin role"
	if cl.IsAdmin() || cl.System {
		why = "Nova did not answer"
	}
	can(ok["compute"] && (cl.IsAdmin() || cl.System), "see servers of all projects (--all-projects)", why)
	can(ok["volumev3"], "snapshot volumes and read them", "Cinder v3 did not answer")
	can(ok["volumev3"] && ok["image"], "read snapshots through Glance (--transfer glance)", "needs Cinder and Glance")
	can(ok["network"], "capture ports and security groups", "Neutron did not answer (definitions will lack ports)")
	can(ok["compute"] && ok["image"], "protect image-backed servers (Nova image snapshots)", "needs Nova and Glance")
	if !ok["compute"] || !ok["volumev3"] || !ok["image"] {
		r.Problems = append(r.Problems, "cairn needs Nova, Cinder v3 and Glance; see the services above")
	}
}

// versions returns the microversion range a service announces.
func (cl *Cloud) versions(ctx context.Context, typ string) string {
	var sc *gophercloud.ServiceClient
	switch typ {
	case "compute":
		sc = cl.Compute
	case "volumev3":
		sc = cl.Volume
	default:
		return ""
	}
	var b struct {
		Version struct {
			Version    string `json:"version"`
			MinVersion string `json:"min_version"`
		} `json:"version"`
	}
	// The versioned root (…/v2.1 or …/v3, without a project id) describes itself.
	base := sc.Endpoint
	for _, v := range []string{"/v2.1", "/v3"} {
		if i := strings.Index(base, v); i >= 0 {
			base = base[:i+len(v)]
		}
	}
	if !strings.HasSuffix(base, "/v2.1") && !strings.HasSuffix(base, "/v3") {
		return ""
	}
	if _, err := sc.Get(ctx, base+"/", &b, &gophercloud.RequestOpts{OkCodes: []int{200}}); err != nil || b.Version.Version == "" {
		return ""
	}
	return b.Version.MinVersion + " – " + b.Version.Version
}
