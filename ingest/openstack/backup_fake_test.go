package openstack

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// bkFake is an in-memory Keystone, Nova, Cinder, Glance and Neutron
// with just what a backup touches, for the cases a real cloud cannot be
// made to produce on demand: a backend whose snapshots fail, snapshots
// that never become available, a quota already used up.
type bkFake struct {
	t   *testing.T
	srv *httptest.Server
	mu  sync.Mutex

	snapshotStatus string            // status new snapshots reach ("available", "error", "creating")
	quota          map[string][3]int // limit, in_use, reserved
	snapshotPost   int               // status for POST /snapshots (0: 202)
	snapshots      map[string]string // id -> status
	deleted        []string
	n              int

	// rootSnapshot, when set, makes s1 an image-backed server (base image
	// img0, volume v2 attached) whose Nova image snapshot ends as the
	// driver leaves it: "queued" (nothing uploaded, the server's task
	// over) or "empty" (active with 0 bytes).
	rootSnapshot string
	images       map[string]bool // Nova snapshot images not yet deleted

	// lateSnapshot, when set, drops the connection of the first snapshot
	// request without an answer and creates the snapshot that long
	// after (an API that goes on with a request whose client is gone).
	lateSnapshot time.Duration
	snapNames    map[string]string // id -> name

	// hosts are more servers (id -> project, status), candidates for
	// --attach-to-server.
	hosts map[string][2]string

	beats []string // "METHOD path body" of heartbeat updates
}

func newBkFake(t *testing.T) *bkFake {
	f := &bkFake{t: t, snapshotStatus: "available", snapshots: map[string]string{}, images: map[string]bool{},
		quota: map[string][3]int{"snapshots": {10, 0, 0}, "volumes": {10, 2, 0}, "gigabytes": {1000, 2, 0}}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *bkFake) config() Config {
	return Config{AuthURL: f.srv.URL + "/identity/v3", Username: "admin", Password: "secret", ProjectName: "admin"}
}

func (f *bkFake) reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (f *bkFake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := r.URL.Path
	switch {
	case (r.Method == "POST" && strings.HasSuffix(p, "/metadata")) || (r.Method == "PATCH" && strings.HasPrefix(p, "/image/v2/images/")):
		b, _ := io.ReadAll(r.Body)
		f.beats = append(f.beats, r.Method+" "+p+" "+string(b))
		f.reply(w, 200, map[string]any{})
	case r.Method == "POST" && p == "/identity/v3/auth/tokens":
		w.Header().Set("X-Subject-Token", "tok")
		ep := func(typ, path string) map[string]any {
			return map[string]any{"type": typ, "name": typ, "id": typ, "endpoints": []map[string]any{
				{"interface": "public", "region": "RegionOne", "region_id": "RegionOne", "url": f.srv.URL + path, "id": typ}}}
		}
		f.reply(w, 201, map[string]any{"token": map[string]any{
			"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			"user":       map[string]any{"id": "u1", "name": "admin", "domain": map[string]any{"id": "default", "name": "Default"}},
			"project":    map[string]any{"id": "p1", "name": "admin", "domain": map[string]any{"id": "default", "name": "Default"}},
			"roles":      []map[string]any{{"id": "r1", "name": "admin"}},
			"catalog": []map[string]any{ep("identity", "/identity/v3"), ep("compute", "/compute/v2.1"),
				ep("volumev3", "/volume/v3/p1"), ep("image", "/image"), ep("network", "/network")},
		}})
	case r.Method == "GET" && (p == "/compute/v2.1/servers/detail" || p == "/compute/v2.1/servers/s1"):
		s := map[string]any{"id": "s1", "name": "web1", "status": "ACTIVE", "tenant_id": "p1", "user_id": "u1",
			"image": "", "metadata": map[string]string{}, "tags": []string{},
			"flavor":                               map[string]any{"original_name": "m1", "vcpus": 1, "ram": 256, "disk": 1, "extra_specs": map[string]string{}},
			"os-extended-volumes:volumes_attached": []map[string]any{{"id": "v1"}, {"id": "v2"}}}
		if f.rootSnapshot != "" {
			s["image"] = map[string]any{"id": "img0"}
			s["os-extended-volumes:volumes_attached"] = []map[string]any{{"id": "v2"}}
			s["OS-EXT-STS:task_state"] = nil // the snapshot task is over
		}
		if p == "/compute/v2.1/servers/s1" {
			f.reply(w, 200, map[string]any{"server": s})
		} else {
			f.reply(w, 200, map[string]any{"servers": []any{s}})
		}
	case r.Method == "GET" && strings.HasPrefix(p, "/volume/v3/p1/volumes/"):
		id := strings.TrimPrefix(p, "/volume/v3/p1/volumes/")
		dev := map[string]string{"v1": "/dev/vda", "v2": "/dev/vdb"}[id]
		f.reply(w, 200, map[string]any{"volume": map[string]any{"id": id, "name": id, "size": 1, "volume_type": "rbd",
			"bootable": fmt.Sprint(id == "v1"), "status": "in-use", "attachments": []map[string]any{{"server_id": "s1", "device": dev}}}})
	case r.Method == "GET" && strings.HasPrefix(p, "/volume/v3/p1/os-quota-sets/"):
		q := map[string]any{}
		for k, v := range f.quota {
			q[k] = map[string]int{"limit": v[0], "in_use": v[1], "reserved": v[2]}
		}
		f.reply(w, 200, map[string]any{"quota_set": q})
	case r.Method == "POST" && p == "/volume/v3/p1/snapshots":
		if f.snapshotPost != 0 {
			f.reply(w, f.snapshotPost, map[string]any{"overLimit": map[string]any{"message": "SnapshotLimitExceeded: Maximum number of snapshots allowed (10) exceeded"}})
			return
		}
		var b struct {
			Snapshot struct {
				VolumeID string `json:"volume_id"`
				Name     string `json:"name"`
			} `json:"snapshot"`
		}
		json.NewDecoder(r.Body).Decode(&b)
		f.n++
		id := fmt.Sprintf("snap%d", f.n)
		if f.snapNames == nil {
			f.snapNames = map[string]string{}
		}
		f.snapNames[id] = b.Snapshot.Name
		if f.lateSnapshot > 0 {
			late := f.lateSnapshot
			f.lateSnapshot = 0
			time.AfterFunc(late, func() {
				f.mu.Lock()
				f.snapshots[id] = f.snapshotStatus
				f.mu.Unlock()
			})
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		f.snapshots[id] = f.snapshotStatus
		f.reply(w, 202, map[string]any{"snapshot": map[string]any{"id": id, "name": b.Snapshot.Name, "status": "creating", "volume_id": b.Snapshot.VolumeID}})
	case r.Method == "GET" && p == "/volume/v3/p1/snapshots": // lookup by name
		list := []any{}
		for id, st := range f.snapshots {
			if name := f.snapNames[id]; name == r.URL.Query().Get("name") {
				list = append(list, map[string]any{"id": id, "name": name, "status": st})
			}
		}
		f.reply(w, 200, map[string]any{"snapshots": list})
	case r.Method == "GET" && strings.HasPrefix(p, "/volume/v3/p1/snapshots/"):
		id := strings.TrimPrefix(p, "/volume/v3/p1/snapshots/")
		st, ok := f.snapshots[id]
		if !ok {
			f.reply(w, 404, map[string]any{"itemNotFound": map[string]any{"message": "not found"}})
			return
		}
		f.reply(w, 200, map[string]any{"snapshot": map[string]any{"id": id, "status": st}})
	case r.Method == "DELETE" && strings.HasPrefix(p, "/volume/v3/p1/snapshots/"):
		id := strings.TrimPrefix(p, "/volume/v3/p1/snapshots/")
		delete(f.snapshots, id)
		f.deleted = append(f.deleted, id)
		w.WriteHeader(202)
	case r.Method == "GET" && p == "/volume/v3/p1/messages":
		f.reply(w, 200, map[string]any{"messages": []map[string]any{{"user_message": "create snapshot: the backend does not support snapshots of in-use volumes"}}})
	case r.Method == "GET" && p == "/image/" && f.rootSnapshot != "": // version discovery
		f.reply(w, 300, map[string]any{"versions": []map[string]any{{"id": "v2.16", "status": "CURRENT",
			"links": []map[string]string{{"rel": "self", "href": f.srv.URL + "/image/v2/"}}}}})
	case r.Method == "GET" && (p == "/image/" || p == "/network/"): // version discovery
		f.reply(w, 300, map[string]any{"versions": []any{}})
	case r.Method == "GET" && p == "/image/v2/images/img0":
		f.reply(w, 200, map[string]any{"id": "img0", "name": "base", "status": "active", "disk_format": "raw", "size": 1 << 20, "os_distro": "x"})
	case r.Method == "POST" && p == "/compute/v2.1/servers/s1/action" && f.rootSnapshot != "":
		f.n++
		id := fmt.Sprintf("snapimg%d", f.n)
		f.images[id] = true
		f.reply(w, 202, map[string]any{"image_id": id})
	case strings.HasPrefix(p, "/image/v2/images/snapimg"):
		id := strings.TrimPrefix(p, "/image/v2/images/")
		switch {
		case !f.images[id]:
			f.reply(w, 404, map[string]any{"message": "not found"})
		case r.Method == "DELETE":
			delete(f.images, id)
			f.deleted = append(f.deleted, id)
			w.WriteHeader(204)
		case f.rootSnapshot == "queued":
			f.reply(w, 200, map[string]any{"id": id, "status": "queued", "size": nil, "disk_format": nil})
		default:
			f.reply(w, 200, map[string]any{"id": id, "status": "active", "size": 0, "disk_format": "raw"})
		}
	case r.Method == "GET" && strings.HasPrefix(p, "/compute/v2.1/servers/") && f.hosts != nil:
		id := strings.TrimPrefix(p, "/compute/v2.1/servers/")
		h, ok := f.hosts[id]
		if !ok {
			f.reply(w, 404, map[string]any{"itemNotFound": map[string]any{"message": "Instance " + id + " could not be found."}})
			return
		}
		f.reply(w, 200, map[string]any{"server": map[string]any{"id": id, "name": "host-" + id[:4], "tenant_id": h[0], "status": h[1]}})
	case r.Method == "GET" && p == "/network/v2.0/ports":
		f.reply(w, 200, map[string]any{"ports": []any{}})
	default:
		f.t.Logf("fake cloud: unexpected %s %s", r.Method, r.URL)
		f.reply(w, 404, map[string]any{"itemNotFound": map[string]any{"message": "fake: no such resource"}})
	}
}
