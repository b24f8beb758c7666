package openstack

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// pagedFake serves Cinder snapshot and volume lists and Glance image lists
// in pages of pageSize, with the next links each service really uses
// (snapshots_links / volumes_links hrefs, Glance's "next"), and deletes
// what it is asked to. Everything else (Keystone) is bkFake's.
type pagedFake struct {
	*bkFake
	mu       sync.Mutex
	pageSize int
	res      map[string][]*pagedRes // kind -> resources, in listing order
	pages    map[string]int         // list requests per kind
}

type pagedRes struct {
	id, name string
	meta     map[string]string
	gone     bool
	at       time.Time // created_at and updated_at ("": not sent)
}

func newPagedFake(t *testing.T, pageSize int) *pagedFake {
	f := &pagedFake{bkFake: &bkFake{t: t, snapshots: map[string]string{}}, pageSize: pageSize,
		res: map[string][]*pagedRes{}, pages: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *pagedFake) add(kind, name string, meta map[string]string) *pagedRes {
	r := &pagedRes{id: fmt.Sprintf("%s-%02d", kind, len(f.res[kind])), name: name, meta: meta}
	f.res[kind] = append(f.res[kind], r)
	return r
}

func (f *pagedFake) find(kind, id string) *pagedRes {
	for _, r := range f.res[kind] {
		if r.id == id && !r.gone {
			return r
		}
	}
	return nil
}

// page returns the resources after marker, at most min(limit, pageSize),
// and whether more follow.
func (f *pagedFake) page(kind string, q map[string][]string) ([]*pagedRes, bool) {
	f.pages[kind]++
	limit := f.pageSize
	if l := first(q["limit"]); l != "" {
		if n, err := strconv.Atoi(l); err == nil && n < limit {
			limit = n
		}
	}
	var live []*pagedRes
	for _, r := range f.res[kind] {
		if !r.gone {
			live = append(live, r)
		}
	}
	start := 0
	if m := first(q["marker"]); m != "" {
		start = len(live)
		for i, r := range live {
			if r.id == m {
				start = i + 1
			}
		}
	}
	end := min(start+limit, len(live))
	return live[start:end], end < len(live)
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (f *pagedFake) serve(w http.ResponseWriter, r *http.Request) {
	p, q := r.URL.Path, r.URL.Query()
	f.mu.Lock()
	defer f.mu.Unlock()
	cinder := map[string]string{"/volume/v3/p1/snapshots": KindSnapshot, "/volume/v3/p1/snapshots/detail": KindSnapshot,
		"/volume/v3/p1/volumes": KindVolume, "/volume/v3/p1/volumes/detail": KindVolume}
	switch {
	case r.Method == "GET" && p == "/image/": // Glance's version discovery
		f.reply(w, 300, map[string]any{"versions": []map[string]any{{"id": "v2.16", "status": "CURRENT",
			"links": []map[string]string{{"rel": "self", "href": f.srv.URL + "/image/v2/"}}}}})
	case r.Method == "GET" && cinder[p] != "":
		kind := cinder[p]
		items, more := f.page(kind, q)
		var list []map[string]any
		for _, x := range items {
			e := map[string]any{"id": x.id, "name": x.name, "metadata": x.meta, "status": "available"}
			if !x.at.IsZero() {
				e["created_at"] = x.at.UTC().Format("2006-01-02T15:04:05.000000")
				e["updated_at"] = e["created_at"]
			}
			list = append(list, e)
		}
		body := map[string]any{kind + "s": list}
		if more {
			next := q
			next.Set("marker", items[len(items)-1].id)
			body[kind+"s_links"] = []map[string]string{{"rel": "next", "href": f.srv.URL + p + "?" + next.Encode()}}
		}
		f.reply(w, 200, body)
	case r.Method == "GET" && p == "/image/v2/images":
		items, more := f.page(KindImage, q)
		var list []map[string]any
		for _, x := range items {
			e := map[string]any{"id": x.id, "name": x.name, "status": "active"}
			for k, v := range x.meta {
				e[k] = v
			}
			if !x.at.IsZero() {
				e["created_at"] = x.at.UTC().Format(time.RFC3339)
				e["updated_at"] = e["created_at"]
			}
			list = append(list, e)
		}
		body := map[string]any{"images": list, "first": "/v2/images"}
		if more {
			next := q
			next.Set("marker", items[len(items)-1].id)
			body["next"] = "/v2/images?" + next.Encode()
		}
		f.reply(w, 200, body)
	case strings.HasPrefix(p, "/volume/v3/p1/snapshots/") || strings.HasPrefix(p, "/volume/v3/p1/volumes/") || strings.HasPrefix(p, "/image/v2/images/"):
		kind, id := KindImage, p[strings.LastIndex(p, "/")+1:]
		switch {
		case strings.Contains(p, "/snapshots/"):
			kind = KindSnapshot
		case strings.Contains(p, "/volumes/"):
			kind = KindVolume
		}
		x := f.find(kind, id)
		switch {
		case x == nil:
			f.reply(w, 404, map[string]any{"itemNotFound": map[string]any{"message": "not found"}})
		case r.Method == "DELETE":
			x.gone = true
			w.WriteHeader(202)
		case kind == KindImage:
			f.reply(w, 200, map[string]any{"id": x.id, "name": x.name, "status": "active"})
		default:
			f.reply(w, 200, map[string]any{kind: map[string]any{"id": x.id, "name": x.name, "status": "available"}})
		}
	default:
		f.mu.Unlock()
		f.bkFake.serve(w, r)
		f.mu.Lock()
	}
}

// TestCleanupOrphansPaginated: with more leftovers and other resources
// than one page holds, orphan cleanup reads every page of snapshots,
// volumes and images, deletes every marked temporary (the last one sits
// on the last page) and nothing else.
func TestCleanupOrphansPaginated(t *testing.T) {
	f := newPagedFake(t, 3)
	mark := func(run string) map[string]string {
		return map[string]string{MetaTemporary: "true", MetaRun: run, MetaServer: "s1"}
	}
	var want, keep []*pagedRes
	for _, kind := range []string{KindSnapshot, KindVolume, KindImage} {
		for i := range 8 {
			name := fmt.Sprintf("%s%s-%d", TempPrefix, "deadrun-s1", i) // a run that left no journal
			switch i {
			case 0, 4, 7:
				want = append(want, f.add(kind, name, mark("deadrun")))
			case 2:
				if kind == KindSnapshot { // Nova's snapshot of a cairn image: named, not marked
					want = append(want, f.add(kind, "snapshot for "+name, nil))
				} else {
					keep = append(keep, f.add(kind, "user-"+kind, nil))
				}
			case 5:
				if kind == KindImage { // images are marked by name only
					want = append(want, f.add(kind, name, nil))
				} else { // the prefix without cairn's metadata is someone else's
					keep = append(keep, f.add(kind, name, map[string]string{"owner": "someone"}))
				}
			default:
				keep = append(keep, f.add(kind, fmt.Sprintf("user-%s-%d", kind, i), nil))
			}
		}
	}
	cl, err := Connect(context.Background(), f.config())
	if err != nil {
		t.Fatal(err)
	}
	if cl.Image == nil || cl.Volume == nil {
		t.Fatalf("fake cloud: services %v", cl.ServiceErrors)
	}
	rep, err := cl.CleanupOrphans(context.Background(), t.TempDir(), Timeouts{Delete: time.Second}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{KindSnapshot, KindVolume, KindImage} {
		if f.pages[kind] < 3 {
			t.Errorf("%ss: %d list requests, want every one of the 3 pages read", kind, f.pages[kind])
		}
	}
	for _, r := range want {
		if !r.gone {
			t.Errorf("orphan %s %q not deleted", r.id, r.name)
		}
	}
	for _, r := range keep {
		if r.gone {
			t.Errorf("%s %q deleted, but it is not cairn's", r.id, r.name)
		}
	}
	if rep.Orphans != len(want) || rep.Deleted != len(want) || len(rep.Left) != 0 {
		t.Errorf("report %+v, want %d orphans found and deleted", rep, len(want))
	}
}

// TestCleanupOrphansRemoteRuns: orphan cleanup on one host must not delete
// the temporaries of a backup running on another host (whose journal lock
// it cannot see) while the run's heartbeat, or the temporaries' creation
// or update, is younger than the grace age; a run of this host is judged
// by its journal lock, in the journal directory or where its temporaries
// say its journal is.
func TestCleanupOrphansRemoteRuns(t *testing.T) {
	f := newPagedFake(t, 50)
	dir := t.TempDir()
	live, err := NewJournal(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	now := time.Now()
	me := hostname()
	other, err := NewJournal(t.TempDir(), "") // a run of this host with another --journal-dir
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	type res struct {
		run, host, beat, journal string
		at                       time.Time
		keep                     bool
	}
	beat := func(d time.Duration) string { return now.Add(-d).UTC().Format(time.RFC3339) }
	cases := []res{
		{run: "20261201t100000-aaaa0001", host: "backup-2", beat: beat(time.Hour), at: now.Add(-30 * time.Hour), keep: true},          // long run elsewhere, beating
		{run: "20261201t100000-aaaa0002", host: "backup-2", beat: beat(7 * time.Hour), at: now.Add(-8 * time.Hour), keep: false},      // silent for longer than the grace
		{run: "20261201t100000-aaaa0003", host: me, beat: beat(0), journal: filepath.Join(dir, "gone.journal"), at: now, keep: false}, // this host, journal gone: dead
		{run: "20261201t100000-aaaa0004", host: "", at: now.Add(-10 * time.Minute), keep: true},                                       // an unknown host, just created
		{run: "20261201t100000-aaaa0005", host: "", at: now.Add(-10 * time.Hour), keep: false},                                        // old and unmarked
		{run: live.Run, host: me, beat: beat(20 * time.Hour), at: now.Add(-20 * time.Hour), keep: true},                               // this host, journal locked in dir
		{run: other.Run, host: me, beat: beat(20 * time.Hour), journal: other.Path(), at: now.Add(-20 * time.Hour), keep: true},       // this host, locked elsewhere
		{run: "20261201t100000-aaaa0008", host: me, beat: beat(time.Minute), at: now.Add(-time.Hour), keep: true},                     // this host, journal unknown: grace
	}
	type made struct {
		r    *pagedRes
		keep bool
	}
	var all []made
	for _, c := range cases {
		for _, kind := range []string{KindSnapshot, KindVolume, KindImage} {
			meta := map[string]string{MetaTemporary: "true", MetaRun: c.run, MetaServer: "s1"}
			if c.host != "" {
				meta[MetaHost] = c.host
			}
			if c.beat != "" {
				meta[MetaHeartbeat] = c.beat
			}
			if c.journal != "" {
				meta[MetaJournal] = c.journal
			}
			r := f.add(kind, TempPrefix+c.run+"-s1-"+kind, meta)
			r.at = c.at
			all = append(all, made{r, c.keep})
		}
	}
	cl, err := Connect(context.Background(), f.config())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := cl.CleanupOrphans(context.Background(), dir, Timeouts{Delete: time.Second}, 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if m.r.gone == m.keep {
			t.Errorf("%s (%v): deleted %v, want kept %v", m.r.name, m.r.meta, m.r.gone, m.keep)
		}
	}
	if len(rep.Remote) != 3 || rep.Remote[0].Run != cases[0].run || rep.Remote[0].Host != "backup-2" || rep.Remote[0].Temporaries != 3 ||
		rep.Remote[1].Run != cases[3].run || rep.Remote[2].Run != cases[7].run || rep.Grace != "6h0m0s" {
		t.Errorf("report of runs left alone: %+v (grace %s)", rep.Remote, rep.Grace)
	}
	if rep.Orphans != 9 || rep.Deleted != 9 {
		t.Errorf("report %+v, want 9 orphans deleted", rep)
	}
}
