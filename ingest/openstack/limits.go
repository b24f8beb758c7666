package openstack

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sync/semaphore"
)

// Limits keep a backup from hurting the cloud.
type Limits struct {
	Servers             int // servers backed up at once
	SnapshotsPerProject int // live temporary snapshots per project
	Snapshots           int // live temporary snapshots in all
	Transfers           int // snapshot reads (clone, upload, download) at once
}

// DefaultLimits are conservative for a shared production cloud.
var DefaultLimits = Limits{Servers: 2, SnapshotsPerProject: 8, Snapshots: 16, Transfers: 2}

// snapshotSlots bounds live snapshots per project and in all. A server
// takes the slots for all its volumes at once (its snapshots must be
// taken together) and gives each back as the snapshot is deleted.
type snapshotSlots struct {
	mu         sync.Mutex
	perProject int
	projects   map[string]*semaphore.Weighted
	all        *semaphore.Weighted
	total      int
}

func newSnapshotSlots(l Limits) *snapshotSlots {
	return &snapshotSlots{perProject: l.SnapshotsPerProject, projects: map[string]*semaphore.Weighted{},
		all: semaphore.NewWeighted(int64(l.Snapshots)), total: l.Snapshots}
}

func (s *snapshotSlots) project(p string) *semaphore.Weighted {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.projects[p]
	if !ok {
		w = semaphore.NewWeighted(int64(s.perProject))
		s.projects[p] = w
	}
	return w
}

// acquire takes n slots for project; release gives one back.
func (s *snapshotSlots) acquire(ctx context.Context, project string, n int) (release func(k int), err error) {
	if n > s.perProject || n > s.total {
		return nil, fmt.Errorf("the server needs %d snapshots at once but the limit is %d per project and %d in all; raise --max-snapshots-per-project / --max-snapshots", n, s.perProject, s.total)
	}
	p := s.project(project)
	if err := p.Acquire(ctx, int64(n)); err != nil {
		return nil, err
	}
	if err := s.all.Acquire(ctx, int64(n)); err != nil {
		p.Release(int64(n))
		return nil, err
	}
	var mu sync.Mutex
	left := n
	return func(k int) {
		mu.Lock()
		defer mu.Unlock()
		k = min(k, left)
		left -= k
		p.Release(int64(k))
		s.all.Release(int64(k))
	}, nil
}

// QuotaNeed is what one server's backup will create at most.
type QuotaNeed struct {
	Snapshots, Volumes, Gigabytes int
}

// quotaItem is one Cinder quota with its usage.
type quotaItem struct {
	Limit    int `json:"limit"`
	InUse    int `json:"in_use"`
	Reserved int `json:"reserved"`
}

func (q quotaItem) free() int {
	if q.Limit < 0 {
		return 1 << 30
	}
	return q.Limit - q.InUse - q.Reserved
}

// QuotaError says which quota is too small.
type QuotaError struct {
	Project, Resource string
	Need, Free, Limit int
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("project %s: the backup needs %d more %s but the Cinder quota leaves %d (limit %d): raise it (openstack quota set --%s N %s) or back up fewer servers at once (--parallel)",
		e.Project, e.Need, e.Resource, e.Free, e.Limit, e.Resource, e.Project)
}

// checkQuota compares need with the project's Cinder quota usage. A
// cloud that hides quotas from the user is not an error: the snapshot
// request itself will then fail with the quota message.
func (cl *Cloud) checkQuota(ctx context.Context, project string, need QuotaNeed) error {
	var b struct {
		Q map[string]any `json:"quota_set"`
	}
	if err := getJSON(ctx, cl.Volume, "os-quota-sets/"+project+"?usage=true", &b); err != nil {
		if s := httpStatus(err); s == 403 || s == 404 {
			return nil
		}
		return fmt.Errorf("read Cinder quota of project %s: %s", project, apiMessage(err))
	}
	for _, c := range []struct {
		key  string
		need int
	}{{"snapshots", need.Snapshots}, {"volumes", need.Volumes}, {"gigabytes", need.Gigabytes}} {
		q, ok := decodeQuota(b.Q[c.key])
		if !ok || c.need == 0 {
			continue
		}
		if f := q.free(); f < c.need {
			return &QuotaError{Project: project, Resource: c.key, Need: c.need, Free: f, Limit: q.Limit}
		}
	}
	return nil
}

func decodeQuota(v any) (quotaItem, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return quotaItem{}, false
	}
	n := func(k string) int {
		switch v := m[k].(type) {
		case float64:
			return int(v)
		case json.Number: // gophercloud decodes with UseNumber
			i, _ := v.Int64()
			return int(i)
		case string: // some deployments quote numbers
			i, _ := strconv.Atoi(v)
			return i
		}
		return 0
	}
	return quotaItem{Limit: n("limit"), InUse: n("in_use"), Reserved: n("reserved")}, true
}
