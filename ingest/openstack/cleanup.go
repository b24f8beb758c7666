package openstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"golang.org/x/sys/unix"
)

// CleanupReport says what a cleanup found and did.
type CleanupReport struct {
	Journals int      `json:"journals"` // stale journals replayed
	Deleted  int      `json:"deleted"`  // temporaries deleted (or found already gone)
	Orphans  int      `json:"orphans"`  // marked temporaries found without a journal
	Left     []Temp   `json:"left,omitempty"`
	Skipped  []string `json:"skipped_journals,omitempty"` // journals of another cloud
	// Remote lists the runs of other hosts whose temporaries were left
	// alone: their last sign of life is younger than the grace age.
	Remote []RemoteRun `json:"remote_runs,omitempty"`
	Grace  string      `json:"orphan_grace,omitempty"`
}

// RemoteRun is a run on another host that orphan cleanup counts alive.
type RemoteRun struct {
	Run         string    `json:"run"`
	Host        string    `json:"host,omitempty"` // "" when its temporaries do not say
	LastSeen    time.Time `json:"last_seen"`
	Temporaries int       `json:"temporaries"`
	journal     string    // the run's journal path on its host
}

// Cleanup replays the journals of dead runs in dir that belong to this
// cloud and deletes what they left, in dependency order. A journal is
// removed once everything in it is gone.
func (cl *Cloud) Cleanup(ctx context.Context, dir string, to Timeouts) (CleanupReport, error) {
	var rep CleanupReport
	js, err := StaleJournals(dir)
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, j := range js {
		if j.Cloud != "" && j.Cloud != cl.AuthURL() {
			rep.Skipped = append(rep.Skipped, j.Path()+" ("+j.Cloud+")")
			j.f.Close()
			continue
		}
		rep.Journals++
		before := len(j.Live())
		err := releaseAll(ctx, cl, j, to)
		rep.Deleted += before - len(j.Live())
		rep.Left = append(rep.Left, j.Live()...)
		if err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", j.Run, err))
		}
		j.Close()
	}
	if len(rep.Left) > 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%d temporaries remain", len(rep.Left)))
	}
	return rep, errors.Join(errs...)
}

// CleanupOrphans finds resources named and marked as cairn temporaries
// whose run is not alive and deletes them. It covers journals that were
// lost with the machine that ran the backup. A run is alive when its
// journal in dir, or for a run of this host its journal where its
// temporaries say, is locked; a run of this host whose journal is gone or
// free is dead. Any other run (of another host, or whose journal cannot
// be read) is alive while the newest heartbeat, creation or update among
// its temporaries is younger than grace (heartbeat.go).
func (cl *Cloud) CleanupOrphans(ctx context.Context, dir string, to Timeouts, grace time.Duration) (CleanupReport, error) {
	rep := CleanupReport{Grace: grace.String()}
	found, err := cl.listMarked(ctx)
	if err != nil {
		return rep, err
	}
	runs := map[string]*RemoteRun{}
	for _, m := range found {
		r := runs[m.run]
		if r == nil {
			r = &RemoteRun{Run: m.run}
			runs[m.run] = r
		}
		if m.host != "" {
			r.Host = m.host
		}
		if m.journal != "" {
			r.journal = m.journal
		}
		if m.seen.After(r.LastSeen) {
			r.LastSeen = m.seen
		}
		r.Temporaries++
	}
	me, now := hostname(), time.Now()
	alive := map[string]bool{}
	for run, r := range runs {
		switch {
		case runAlive(dir, run):
			alive[run] = true
		case r.Host == me && r.journal != "" && journalState(r.journal) == "locked":
			alive[run] = true
		case r.Host == me && r.journal != "" && journalState(r.journal) != "unknown":
			// a run of this host whose journal is gone or unlocked is dead
		case now.Sub(r.LastSeen) < grace:
			alive[run] = true
			rep.Remote = append(rep.Remote, *r)
		}
	}
	sort.Slice(rep.Remote, func(a, b int) bool { return rep.Remote[a].Run < rep.Remote[b].Run })
	j := &Journal{live: map[string]Temp{}}
	for _, m := range found {
		if alive[m.run] {
			continue
		}
		j.live[tempKey(m.Temp)] = m.Temp
		rep.Orphans++
	}
	err = releaseAll(ctx, cl, memJournal{j}, to)
	rep.Left = j.Live()
	rep.Deleted = rep.Orphans - len(rep.Left)
	return rep, err
}

// memJournal is a journal kept only in memory (orphan cleanup).
type memJournal struct{ *Journal }

func (m memJournal) Created(t Temp) error { m.apply("created", t); return nil }
func (m memJournal) Deleted(t Temp) error { m.apply("deleted", t); return nil }

// runOf is the run id in a temporary's name ("" if it has none).
func runOf(name string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(name, "snapshot for "), TempPrefix)
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[0] + "-" + parts[1]
}

// runAlive reports whether a run of this host still runs (its journal
// in dir is locked).
func runAlive(dir, run string) bool {
	return run != "" && journalState(filepath.Join(dir, run+".journal")) == "locked"
}

// journalState tells whether the journal at path is held by a live run:
// "locked", "free" (its run died), "gone" (no such file) or "unknown"
// (it cannot be opened, e.g. another user's).
func journalState(path string) string {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "gone"
	}
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return "locked"
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return "free"
}

func isTempName(n string) bool {
	return strings.HasPrefix(n, TempPrefix) || strings.HasPrefix(n, "snapshot for "+TempPrefix)
}

// listPage is the page size cleanup asks for; a cloud may cap it lower
// (Cinder's osapi_max_limit, Glance's api_limit_max) and the pagers then
// follow its next links.
const listPage = 500

// listMarked lists the volumes, snapshots and images that carry cairn's
// temporary name prefix (and, for volumes and snapshots, its marker
// metadata or Nova's name for the snapshots of a cairn image). Every page
// is read: a project with more resources than one page holds still has
// all its leftovers found.
func (cl *Cloud) listMarked(ctx context.Context) ([]markedTemp, error) {
	var out []markedTemp
	all := cl.IsAdmin() || cl.System
	marked := func(kind, id, name string, meta map[string]string, times ...time.Time) {
		if isTempName(name) && (meta[MetaTemporary] == "true" || strings.HasPrefix(name, "snapshot for ")) {
			out = append(out, newMarked(Temp{Kind: kind, Name: name, ID: id, Server: meta[MetaServer]}, meta, times...))
		}
	}
	err := snapshots.List(cl.Volume, snapshots.ListOpts{AllTenants: all, Limit: listPage}).EachPage(ctx,
		func(_ context.Context, p pagination.Page) (bool, error) {
			ss, err := snapshots.ExtractSnapshots(p)
			for _, s := range ss {
				marked(KindSnapshot, s.ID, s.Name, s.Metadata, s.CreatedAt, s.UpdatedAt)
			}
			return true, err
		})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %s", apiMessage(err))
	}
	err = volumes.List(cl.Volume, volumes.ListOpts{AllTenants: all, Limit: listPage}).EachPage(ctx,
		func(_ context.Context, p pagination.Page) (bool, error) {
			vs, err := volumes.ExtractVolumes(p)
			for _, v := range vs {
				marked(KindVolume, v.ID, v.Name, v.Metadata, v.CreatedAt, v.UpdatedAt)
			}
			return true, err
		})
	if err != nil {
		return nil, fmt.Errorf("list volumes: %s", apiMessage(err))
	}
	err = images.List(cl.Image, images.ListOpts{Limit: listPage}).EachPage(ctx,
		func(_ context.Context, p pagination.Page) (bool, error) {
			is, err := images.ExtractImages(p)
			for _, im := range is {
				if isTempName(im.Name) {
					meta := map[string]string{}
					for k, v := range im.Properties {
						if s, ok := v.(string); ok {
							meta[k] = s
						}
					}
					out = append(out, newMarked(Temp{Kind: KindImage, Name: im.Name, ID: im.ID}, meta, im.CreatedAt, im.UpdatedAt))
				}
			}
			return true, err
		})
	if err != nil {
		return nil, fmt.Errorf("list images: %s", apiMessage(err))
	}
	sort.SliceStable(out, func(a, b int) bool { return kindOrder[out[a].Kind] < kindOrder[out[b].Kind] })
	return out, nil
}

// markedTemp is a temporary found in the cloud with what tells whether
// its run lives: the run, the host that runs it and its last sign of life.
type markedTemp struct {
	Temp
	run, host, journal string
	seen               time.Time
}

func newMarked(t Temp, meta map[string]string, times ...time.Time) markedTemp {
	m := markedTemp{Temp: t, run: meta[MetaRun], host: meta[MetaHost], journal: meta[MetaJournal]}
	if m.run == "" {
		m.run = runOf(t.Name)
	}
	if hb, err := time.Parse(time.RFC3339, meta[MetaHeartbeat]); err == nil {
		times = append(times, hb)
	}
	for _, at := range times {
		if at.After(m.seen) {
			m.seen = at
		}
	}
	return m
}
