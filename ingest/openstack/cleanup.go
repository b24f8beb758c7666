package openstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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
// whose run is not alive (no locked journal in dir) and deletes them. It
// covers journals that were lost with the machine that ran the backup.
func (cl *Cloud) CleanupOrphans(ctx context.Context, dir string, to Timeouts) (CleanupReport, error) {
	var rep CleanupReport
	found, err := cl.listMarked(ctx)
	if err != nil {
		return rep, err
	}
	j := &Journal{live: map[string]Temp{}}
	for _, t := range found {
		if runAlive(dir, t.Name) {
			continue
		}
		j.live[tempKey(t)] = t
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

// runAlive reports whether the run that named a temporary still runs.
func runAlive(dir, name string) bool {
	rest := strings.TrimPrefix(strings.TrimPrefix(name, "snapshot for "), TempPrefix)
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) < 2 {
		return false
	}
	f, err := os.Open(filepath.Join(dir, parts[0]+"-"+parts[1]+".journal"))
	if err != nil {
		return false
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		return true
	}
	unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
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
func (cl *Cloud) listMarked(ctx context.Context) ([]Temp, error) {
	var out []Temp
	all := cl.IsAdmin() || cl.System
	marked := func(kind, id, name string, meta map[string]string) {
		if isTempName(name) && (meta[MetaTemporary] == "true" || strings.HasPrefix(name, "snapshot for ")) {
			out = append(out, Temp{Kind: kind, Name: name, ID: id, Server: meta[MetaServer]})
		}
	}
	err := snapshots.List(cl.Volume, snapshots.ListOpts{AllTenants: all, Limit: listPage}).EachPage(ctx,
		func(_ context.Context, p pagination.Page) (bool, error) {
			ss, err := snapshots.ExtractSnapshots(p)
			for _, s := range ss {
				marked(KindSnapshot, s.ID, s.Name, s.Metadata)
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
				marked(KindVolume, v.ID, v.Name, v.Metadata)
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
					out = append(out, Temp{Kind: KindImage, Name: im.Name, ID: im.ID})
				}
			}
			return true, err
		})
	if err != nil {
		return nil, fmt.Errorf("list images: %s", apiMessage(err))
	}
	sortForDeletion(out)
	return out, nil
}
