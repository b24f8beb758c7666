package openstack

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
)

// TestCleanupOrphansOtherHost: `cairn openstack cleanup --orphans` must
// leave alone the temporaries of a backup that runs on another host
// (their heartbeat is fresh) and delete them once the heartbeat is older
// than --orphan-grace; a temporary of this host whose run has no locked
// journal is deleted at once.
func TestCleanupOrphansOtherHost(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	host, _ := os.Hostname()
	newRun := func() string {
		return fmt.Sprintf("%st%06d-%08x", time.Now().UTC().Format("20060102"), time.Now().Nanosecond()%1000000, time.Now().UnixNano()&0xffffffff)
	}
	run, localRun, liveRun := newRun(), newRun(), newRun()
	jdir := t.TempDir()
	mk := func(run, what, onHost string) string {
		name := ops.TempPrefix + run + "-" + what
		meta := map[string]string{ops.MetaTemporary: "true", ops.MetaRun: run, ops.MetaServer: "s-" + what,
			ops.MetaHost: onHost, ops.MetaHeartbeat: time.Now().UTC().Format(time.RFC3339),
			ops.MetaJournal: filepath.Join(jdir, run+".journal")}
		var out struct {
			Volume struct{ ID string } `json:"volume"`
		}
		a.must("POST", "volume", "volumes", map[string]any{"volume": map[string]any{"name": name, "size": 1, "metadata": meta}}, &out)
		t.Cleanup(func() { a.volumeGone(out.Volume.ID) })
		a.wait("volume "+out.Volume.ID+" available", 3*time.Minute, func() (bool, error) {
			st, err := a.volumeStatus(out.Volume.ID)
			return st == "available", err
		})
		return out.Volume.ID
	}
	remote := mk(run, "remote", "backup-host-2.example")
	journal := t.TempDir()
	cleanup := func(grace string) ops.CleanupReport {
		so, se, err := runCairn(t, cloudEnv(journal), "openstack", "cleanup", "--orphans", "--orphan-grace", grace, "--json")
		var rep ops.CleanupReport
		if err != nil || json.Unmarshal([]byte(so), &rep) != nil {
			t.Fatalf("cleanup: %v\n%s\n%s", err, so, se)
		}
		return rep
	}
	exists := func(id string) bool {
		st, err := a.volumeStatus(id)
		return err == nil && st != "gone" && st != "deleting"
	}
	rep := cleanup("1h")
	found := false
	for _, r := range rep.Remote {
		if r.Run == run && r.Host == "backup-host-2.example" {
			found = true
		}
	}
	if !found || !exists(remote) {
		t.Fatalf("the other host's live run was not left alone: report %+v, volume exists %v", rep, exists(remote))
	}
	// A run of this host is judged by the journal its temporaries name
	// (another --journal-dir than cleanup's): gone means dead, heartbeat or
	// not; locked means alive, however old.
	local := mk(localRun, "local", host)
	live := mk(liveRun, "live", host)
	lf, err := os.Create(filepath.Join(jdir, liveRun+".journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	rep = cleanup("1h")
	if exists(local) {
		t.Errorf("temporary of a dead run of this host (%s) left: %+v", host, rep)
	}
	if !exists(live) {
		t.Errorf("temporary of a live run of this host (journal locked elsewhere) deleted: %+v", rep)
	}
	if !exists(remote) {
		t.Errorf("the other host's temporary was deleted along with this host's")
	}
	// Silent for longer than the grace: an orphan.
	time.Sleep(2 * time.Second)
	rep = cleanup("1s")
	if exists(remote) || rep.Orphans == 0 {
		t.Errorf("temporary of a run silent for longer than the grace left: %+v", rep)
	}
	if !exists(live) {
		t.Errorf("temporary of a live run of this host deleted once past the grace: %+v", rep)
	}
	if strings.Contains(fmt.Sprint(rep.Remote), run) {
		t.Errorf("run %s still reported alive: %+v", run, rep.Remote)
	}
}
