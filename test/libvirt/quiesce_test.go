package libvirt_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest/libvirt"
)

// TestQuiesceWithGuestAgent: a real Linux guest (scripts/libvirt/guest-image.sh)
// runs Debian's qemu-ga and keeps writing files into its ext4 disk. A
// --quiesce backup freezes the file system through libvirt and the agent
// (DomainFsfreeze/DomainFsthaw): it records "filesystem", the guest is
// thawed afterwards and writes on, and the restore point's ext4 is clean
// as left by the freeze (e2fsck -fn passes, no needs_recovery: the journal
// was flushed) with every file the guest had written before the backup,
// byte for byte, including those still in the guest's page cache. A second
// quiesced backup is an incremental one with the same guarantees. The same
// guest backed up without --quiesce is crash-consistent, says that the agent
// could have quiesced it, and its ext4 needs journal recovery: the check
// above tells the two apart.
func TestQuiesceWithGuestAgent(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	g := newLinuxGuest(t, c)
	g.boot()
	g.waitWritten(3, time.Minute)

	quiesced := func(what string, o libvirt.Options) (*libvirt.Result, int) {
		t.Helper()
		n := g.written() // reported by the guest: written, maybe only in its page cache
		o.Quiesce = true
		res := backup(t, c, r, g.name, o)
		if res.Consistency != "filesystem" {
			t.Fatalf("%s quiesced backup: consistency %q, want filesystem; notes %q", what, res.Consistency, res.Notes)
		}
		if !slices.ContainsFunc(res.Notes, func(s string) bool { return strings.Contains(s, "1 guest file system(s) frozen") }) {
			t.Fatalf("%s quiesced backup: no note of the frozen file system: %q", what, res.Notes)
		}
		if st := g.fsfreezeStatus(); st != "thawed" {
			t.Fatalf("after the %s quiesced backup the guest agent says %q, want thawed", what, st)
		}
		g.waitWritten(n+2, 2*time.Minute) // and the guest writes again
		st := restoreExt4(t, r, res.Summary.PointID)
		if !st.fsckOK {
			t.Fatalf("%s quiesced backup: e2fsck -fn of the restored ext4 fails:\n%s", what, st.fsck)
		}
		if st.needsRecovery {
			t.Fatalf("%s quiesced backup: the restored ext4 needs journal recovery (features: %s): it was not frozen", what, st.features)
		}
		st.checkFiles(t, max(1, n-4), n)
		t.Logf("%s quiesced backup: clean ext4 with files up to %d (features: %s)", what, n, st.features)
		return res, n
	}

	full, _ := quiesced("full", libvirt.Options{})
	if full.Kind != "full" || full.Method != libvirt.MethodBackup || full.Checkpoint == "" {
		t.Fatalf("first backup: %+v", full)
	}
	inc, _ := quiesced("incremental", libvirt.Options{})
	if inc.Kind != "incremental" || inc.Base != full.Summary.PointID {
		t.Fatalf("second backup: kind %s base %s, want incremental on %s", inc.Kind, inc.Base, full.Summary.PointID)
	}
	if inc.ChangedRead <= 0 || inc.ChangedRead > guestDiskSize/4 {
		t.Fatalf("incremental backup read %d changed bytes of a %d-byte disk", inc.ChangedRead, guestDiskSize)
	}

	// Without --quiesce: crash-consistent, with the note that it could be better.
	n := g.written()
	crash := backup(t, c, r, g.name, libvirt.Options{})
	if crash.Consistency != "crash" || crash.Kind != "incremental" {
		t.Fatalf("backup without --quiesce: %+v", crash)
	}
	if !slices.ContainsFunc(crash.Notes, func(s string) bool {
		return strings.Contains(s, "guest agent is connected") && strings.Contains(s, "--quiesce")
	}) {
		t.Fatalf("backup without --quiesce of a guest whose agent answers: no note that it could be quiesced: %q", crash.Notes)
	}
	if st := g.fsfreezeStatus(); st != "thawed" {
		t.Fatalf("after a backup without --quiesce the guest agent says %q", st)
	}
	st := restoreExt4(t, r, crash.Summary.PointID)
	if !st.needsRecovery {
		t.Fatalf("the crash-consistent copy of a mounted ext4 has no needs_recovery flag (features: %s): the check of the quiesced copies proves nothing", st.features)
	}
	t.Logf("backup without --quiesce at file %d: crash-consistent, the ext4 needs journal recovery as expected", n)
}

// TestSuspendBoundExpires: when the suspension bound passes before the
// point in time is fixed, the timer resumes the guest (from its own
// goroutine, which sets the expired flag the backup reads) and the backup
// is crash-consistent, says so, and is still byte-exact; the guest runs
// afterwards.
func TestSuspendBoundExpires(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	d := newDomain(t, c, "qcow2", 64*MiB)
	d.start()
	d.write(2*MiB, 1*MiB, 0x51)
	res := backup(t, c, r, d.name, libvirt.Options{Suspend: true, MaxSuspend: time.Nanosecond})
	if res.Consistency != "crash" {
		t.Fatalf("backup whose suspension bound expired: consistency %q, want crash; notes %q", res.Consistency, res.Notes)
	}
	if !slices.ContainsFunc(res.Notes, func(s string) bool { return strings.Contains(s, "suspension bound") }) {
		t.Fatalf("no note about the expired suspension bound: %q", res.Notes)
	}
	if st, _, _ := c.L.DomainGetState(d.dom, 0); st != 1 {
		t.Fatalf("domain state %d after the backup, want running", st)
	}
	assertPoint(t, r, res.Summary.PointID, d.snapshotRef())
}

// TestQuiesceNothingFrozen: a guest whose agent answers but has no file
// system it can freeze (the Linux guest mounts nothing) gets a
// crash-consistent backup with a note saying so, not "filesystem", and
// the agent is thawed afterwards (qemu-ga stays in its frozen state,
// refusing most commands, until it is thawed, also when it froze nothing).
func TestQuiesceNothingFrozen(t *testing.T) {
	c := connect(t)
	r := newRepo(t)
	g := newLinuxGuest(t, c, "cairn.nomount")
	g.boot()
	res := backup(t, c, r, g.name, libvirt.Options{Quiesce: true})
	if res.Consistency != "crash" || res.Kind != "full" {
		t.Fatalf("quiesced backup of a guest with nothing to freeze: %+v", res)
	}
	if !slices.ContainsFunc(res.Notes, func(s string) bool { return strings.Contains(s, "froze no file system") }) {
		t.Fatalf("no note that the agent froze nothing: %q", res.Notes)
	}
	if st := g.fsfreezeStatus(); st != "thawed" {
		t.Fatalf("after the backup the guest agent says %q, want thawed", st)
	}
	if _, err := g.agent(`{"execute":"guest-get-fsinfo"}`); err != nil {
		t.Fatalf("the guest agent refuses commands after the backup: %v", err)
	}
}
