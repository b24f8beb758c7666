package openstack

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
)

// TestBackupKilled SIGKILLs the built binary at several steps of a backup
// (snapshots taken, temporary volume being created, upload running,
// download streaming) and checks that the journal it leaves lets
// `cairn openstack cleanup`, or the next backup, remove every leftover.
func TestBackupKilled(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	srv := newBFVServer(t, a, bkOptions{NoNet: true})
	watched := map[string]bool{srv.ID: true, srv.Volumes[0].ID: true, srv.Volumes[1].ID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()
	steps := []struct {
		name, marker string
		next         string // "cleanup", "backup", or "" (SIGTERM: the run cleans up itself)
	}{
		{"SIGTERM during the upload", "from snapshot ready", ""},
		{"snapshots requested", "] snapshot: started", "cleanup"},
		{"snapshots available", "of volume", "backup"},
		{"temporary volume being created", "] transfer: started", "cleanup"},
		{"upload running", "from snapshot ready", "cleanup"},
		{"download streaming", "streaming image", "backup"},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.next == "" {
				killAt(t, repoDir, journal, srv.ID, st.marker, syscall.SIGTERM)
				noLeaks(t, a, before, watched)
				journalEmpty(t, journal)
				return
			}
			killAt(t, repoDir, journal, srv.ID, st.marker, syscall.SIGKILL)
			left, _ := filepath.Glob(filepath.Join(journal, "*.journal"))
			if len(left) == 0 {
				t.Fatalf("no journal left by the killed run")
			}
			if st.next == "cleanup" {
				so, se, err := runCairn(t, cloudEnv(journal), "openstack", "cleanup", "--json")
				var rep ops.CleanupReport
				if err != nil || json.Unmarshal([]byte(so), &rep) != nil || rep.Journals == 0 {
					t.Fatalf("cleanup: %v\n%s\n%s", err, so, se)
				}
				t.Logf("cleanup after a kill at %q: %d journals, %d temporaries deleted", st.name, rep.Journals, rep.Deleted)
			} else {
				backupServer(t, repoDir, journal, srv.ID)
			}
			noLeaks(t, a, before, watched)
			journalEmpty(t, journal)
		})
	}
}

// killAt starts a backup and sends it sig when a progress line contains
// marker, then waits for it to exit. extra are more backup arguments.
func killAt(t *testing.T, repoDir, journal, server, marker string, sig syscall.Signal, extra ...string) {
	t.Helper()
	args := append([]string{"backup", "openstack", "--repo", repoDir, "--server", server, "--max-transfers", "1"}, extra...)
	cmd := exec.Command(cairnBin(t), args...)
	cmd.Env = append(os.Environ(), cloudEnv(journal)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var log []string
		for sc.Scan() {
			log = append(log, sc.Text())
			if strings.Contains(sc.Text(), marker) {
				cmd.Process.Signal(sig)
				done <- "killed at: " + sc.Text()
				for sc.Scan() {
				}
				return
			}
		}
		done <- "ended before the marker:\n" + strings.Join(log, "\n")
	}()
	select {
	case msg := <-done:
		err := cmd.Wait()
		if sig == syscall.SIGTERM && (err == nil || cmd.ProcessState.ExitCode() != 130) {
			t.Errorf("after SIGTERM: %v (exit %d), want exit code 130", err, cmd.ProcessState.ExitCode())
		}
		if !strings.HasPrefix(msg, "killed at") {
			t.Fatalf("backup %s", msg)
		}
		t.Log(msg)
	case <-time.After(15 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("marker %q never came", marker)
	}
}
