package openstack

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
)

// TestBackupFaults puts a fault-injecting transport in front of every
// endpoint and breaks one call per case: an API 5xx, an answer lost after
// the cloud acted, a stalled call, a download cut mid-stream, a status
// that never comes. Each backup must fail with an error naming the server
// and the step (or succeed where a retry is safe) and leave nothing.
func TestBackupFaults(t *testing.T) {
	base := rsConnect(t, "", nil)
	a := api{t, base}
	srv := newBFVServer(t, a, bkOptions{NoNet: true})
	watched := map[string]bool{srv.ID: true, srv.Volumes[0].ID: true, srv.Volumes[1].ID: true}
	before := a.leakSet()
	re := regexp.MustCompile
	cases := []struct {
		name     string
		rule     *fault
		timeouts ops.Timeouts
		step     string // "" when the backup must succeed
		want     string // in the error
	}{
		{"5xx creating the second snapshot", &fault{Method: "POST", Path: re(`/snapshots$`), Nth: 2, Status: 500, Body: `{"computeFault": {"message": "injected"}}`}, ops.Timeouts{}, "snapshot", "HTTP 500"},
		{"answer lost after the temporary volume was created", &fault{Method: "POST", Path: re(`/volumes$`), Lose: true}, ops.Timeouts{}, "transfer", "temporary volume"},
		{"answer lost after the upload started", &fault{Method: "POST", Path: re(`/volumes/[^/]+/action$`), Lose: true}, ops.Timeouts{}, "transfer", "upload"},
		{"download cut after 8 MiB", &fault{Method: "GET", Path: re(`/images/[^/]+/file$`), CutAt: 8 << 20}, ops.Timeouts{}, "transfer", "download"},
		{"upload never finishes in time", nil, ops.Timeouts{Upload: time.Second}, "transfer", "timed out"},
		{"503 reading a snapshot's status is retried", &fault{Method: "GET", Path: re(`/snapshots/[^/]+$`), Status: 503}, ops.Timeouts{}, "", ""},
		{"stalled status read is retried", &fault{Method: "GET", Path: re(`/volumes/[^/]+$`), Nth: 3, Stall: true}, ops.Timeouts{}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ft *faultTransport
			if c.rule != nil {
				ft = newFaultTransport(c.rule)
			}
			var cl *ops.Cloud
			if ft != nil {
				cl = rsConnect(t, "", ft)
			} else {
				cl = rsConnect(t, "", nil)
			}
			servers, err := cl.ListServers(context.Background(), ops.Selection{Servers: []string{srv.ID}})
			if err != nil {
				t.Fatal(err)
			}
			r := rsRepo(t)
			res, err := cl.Backup(context.Background(), r, servers, ops.BackupOptions{JournalDir: t.TempDir(), Timeouts: c.timeouts})
			if ft != nil && !ft.Fired() {
				t.Errorf("the fault was never injected")
			}
			if c.step == "" {
				if err != nil {
					t.Fatalf("backup failed although the fault was transient: %v %+v", err, res)
				}
			} else {
				if !errors.Is(err, ops.ErrSomeFailed) || res[0].Step != c.step || !strings.Contains(res[0].Error, srv.Name) ||
					!strings.Contains(res[0].Error, c.want) {
					t.Errorf("error %v / result %+v; want step %q naming %s and %q", err, res[0], c.step, srv.Name, c.want)
				}
				t.Logf("error: %s", res[0].Error)
				if pts, _ := r.Points(); len(pts) != 0 {
					t.Errorf("a failed backup left restore point %s", pts[0].ID)
				}
			}
			noLeaks(t, a, before, watched)
		})
	}
}
