package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

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

// listMarked lists the volumes, snapshots and images that carry cairn's
// temporary name prefix (and, for volumes and snapshots, its marker
// metadata or Nova's name for the snapshots of a cairn image).
func (cl *Cloud) listMarked(ctx context.Context) ([]Temp, error) {
	var out []Temp
	q := url.Values{}
	if cl.IsAdmin() || cl.System {
		q.Set("all_tenants", "1")
	}
	for _, kind := range []string{KindSnapshot, KindVolume} {
		var b map[string][]struct {
			ID       string            `json:"id"`
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
			Project  string            `json:"os-extended-snapshot-attributes:project_id"`
		}
		if err := getJSON(ctx, cl.Volume, kind+"s/detail?"+q.Encode(), &b); err != nil {
			return nil, fmt.Errorf("list %ss: %s", kind, apiMessage(err))
		}
		for _, r := range b[kind+"s"] {
			if isTempName(r.Name) && (r.Metadata[MetaTemporary] == "true" || strings.HasPrefix(r.Name, "snapshot for ")) {
				out = append(out, Temp{Kind: kind, Name: r.Name, ID: r.ID, Server: r.Metadata[MetaServer]})
			}
		}
	}
	var b struct {
		Images []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"images"`
	}
	if err := getJSON(ctx, cl.Image, "images?limit=1000", &b); err != nil {
		return nil, fmt.Errorf("list images: %s", apiMessage(err))
	}
	for _, im := range b.Images {
		if isTempName(im.Name) {
			out = append(out, Temp{Kind: KindImage, Name: im.Name, ID: im.ID})
		}
	}
	sortForDeletion(out)
	return out, nil
}
