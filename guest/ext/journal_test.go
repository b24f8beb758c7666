package ext

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// TestDirtyJournal makes the image of a crash-consistent snapshot: an ext
// file system loop-mounted by the kernel, written, synced (the journal
// commits) and copied while still mounted, so its newest metadata is only
// in the journal. The reader must show the state e2fsck -fy recovers.
func TestDirtyJournal(t *testing.T) {
	fstest.RequireTools(t, "e2fsprogs mount coreutils", "mkfs.ext4", "mkfs.ext3", "e2fsck", "mount", "umount", "cp")
	fstest.RequireRoot(t, "chown, mknod or loop mounts")
	cases := []struct {
		name   string
		mkfs   []string
		rounds int
	}{
		{"ext4", []string{"mkfs.ext4"}, 2},                                       // 64-bit, checksum v3 tags
		{"ext3", []string{"mkfs.ext3"}, 2},                                       // 32-bit tags, no checksums
		{"ext4-1k-wrap", []string{"mkfs.ext4", "-b", "1024", "-J", "size=1"}, 8}, // the log wraps
		{"ext4-nocsum", []string{"mkfs.ext4", "-O", "^metadata_csum,^64bit"}, 2}, // v2 journal, plain tags
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Where the kernel's checkpoints leave the log's tail is
			// timing: a copy whose live log happens not to cross the end
			// of the journal is checked like any other, and the wrap case
			// tries again with more rounds.
			rounds := c.rounds
			for wrapTry := 1; ; wrapTry++ {
				rec := checkDirty(t, catchDirty(t, c.mkfs, &rounds))
				if !strings.HasSuffix(c.name, "-wrap") || rec.wrapped {
					return
				}
				if wrapTry == 5 {
					t.Fatal("in 5 tries the replayed log never wrapped round the end of the journal")
				}
				t.Logf("try %d: the replayed log did not wrap round the end of the journal; again with more rounds", wrapTry)
			}
		})
	}
}

// catchDirty makes dirty copies with one more round each time until one
// really needs replay (see makeDirty), at most 4 times; *rounds is the
// number of rounds of the last try.
func catchDirty(t *testing.T, mkfs []string, rounds *int) string {
	for attempt := 1; ; attempt++ {
		*rounds++
		if dirty, ok := makeDirty(t, mkfs, *rounds); ok {
			return dirty
		}
		if attempt == 4 {
			t.Fatal("could not catch the file system with committed, unchecked-pointed transactions in its journal")
		}
	}
}

// makeDirty returns a copy of a mounted file system taken after sync, and
// whether it really needs replay: needs_recovery set, a transaction in the
// journal, and the last round's directory missing without replay.
func makeDirty(t *testing.T, mkfs []string, rounds int) (string, bool) {
	dir := t.TempDir()
	img := filepath.Join(dir, "live.img")
	args := append(mkfs[1:], "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img, "64M")
	fstest.Run(t, mkfs[0], args...)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	fstest.Run(t, "mount", "-o", "loop", img, mnt)
	mounted := true
	defer func() {
		if mounted {
			fstest.Run(t, "umount", mnt)
		}
	}()
	rng := rand.New(rand.NewSource(int64(rounds)))
	// fsync commits the running transaction (every pending metadata change
	// of the file system) to the journal without writing the metadata
	// blocks back in place, as sync(1) would (it syncs the block device).
	for r := 0; r < rounds; r++ {
		churn(t, mnt, r, rng)
		fsync(t, filepath.Join(mnt, fmt.Sprintf("round-%d", r)))
		fsync(t, mnt)
	}
	dirty := filepath.Join(dir, "dirty.img")
	fstest.Run(t, "cp", "--sparse=always", img, dirty)
	fstest.Run(t, "umount", mnt)
	mounted = false

	fh, size := fstest.OpenImage(t, dirty)
	raw, err := open(fh, size, false)
	if err != nil {
		t.Fatal(err)
	}
	if !raw.recovery.NeedsRecovery {
		t.Logf("attempt %d: needs_recovery not set", rounds)
		return dirty, false
	}
	last := fmt.Sprintf("round-%d", rounds-1)
	if _, err := raw.Lookup(raw.Root(), last); !errors.Is(err, vfs.ErrNotFound) {
		t.Logf("attempt %d: %s already on disk without replay (%v)", rounds, last, err)
		return dirty, false
	}
	return dirty, true
}

// churn writes, renames, deletes and re-times files in round r.
func churn(t *testing.T, mnt string, r int, rng *rand.Rand) {
	d := filepath.Join(mnt, fmt.Sprintf("round-%d", r))
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "sub"), 0o750))
	for i := 0; i < 150; i++ {
		b := make([]byte, rng.Intn(9000))
		rng.Read(b)
		must(os.WriteFile(filepath.Join(d, fmt.Sprintf("f%03d", i)), b, 0o644))
		if i%10 == 0 {
			fsync(t, filepath.Join(d, fmt.Sprintf("f%03d", i)))
		}
	}
	big := make([]byte, 1<<20+rng.Intn(100000))
	rng.Read(big)
	must(os.WriteFile(filepath.Join(d, "big"), big, 0o600))
	fsync(t, filepath.Join(d, "big"))
	for i := 0; i < 150; i += 3 {
		must(os.Rename(filepath.Join(d, fmt.Sprintf("f%03d", i)), filepath.Join(d, "sub", fmt.Sprintf("moved%03d", i))))
	}
	for i := 1; i < 150; i += 7 {
		if i%3 == 0 {
			continue // moved above
		}
		must(os.Remove(filepath.Join(d, fmt.Sprintf("f%03d", i))))
	}
	must(os.Symlink("../big", filepath.Join(d, "sub", "link")))
	must(os.Link(filepath.Join(d, "big"), filepath.Join(d, "sub", "big-again")))
	must(os.Lchown(filepath.Join(d, "f002"), 1000+r, 2000+r))
	must(os.Chtimes(filepath.Join(d, "f005"), time.Unix(4102444800+int64(r), 123456789), time.Unix(4102444800+int64(r), 987654321)))
	must(os.Chtimes(filepath.Join(d, "f010"), time.Unix(-1e8, 5), time.Unix(-1e8, 5)))
	if r > 0 {
		// Rewrite and delete what the previous round made.
		prev := filepath.Join(mnt, fmt.Sprintf("round-%d", r-1))
		must(os.WriteFile(filepath.Join(prev, "f004"), []byte("rewritten"), 0o644))
		must(os.RemoveAll(filepath.Join(prev, "sub")))
		must(os.Rename(filepath.Join(prev, "big"), filepath.Join(d, "big-from-before")))
	}
}

func fsync(t *testing.T, path string) {
	t.Helper()
	fh, err := os.Open(path)
	if err == nil {
		err = fh.Sync()
		fh.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// checkDirty compares the reader's view of the dirty image with the
// kernel's view of a copy recovered by e2fsck -fy.
func checkDirty(t *testing.T, dirty string) Recovery {
	fh, size := fstest.OpenImage(t, dirty)
	fsys, err := Open(fh, size)
	if err != nil {
		t.Fatal(err)
	}
	rec := fsys.(*FS).Recovery()
	t.Logf("replayed %d transactions, %d blocks", rec.Transactions, rec.Blocks)
	if !rec.NeedsRecovery || rec.External || rec.Transactions == 0 || rec.Blocks == 0 {
		t.Fatalf("recovery %+v: nothing replayed", rec)
	}
	if err := fsys.(*FS).JournalWarning(); err != nil {
		t.Errorf("JournalWarning for an internal journal: %v", err)
	}

	recovered := filepath.Join(t.TempDir(), "recovered.img")
	fstest.Run(t, "cp", "--sparse=always", dirty, recovered)
	if out, err := exec.Command("e2fsck", "-fy", recovered).CombinedOutput(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			t.Fatalf("e2fsck -fy: %v\n%s", err, out)
		}
	}
	mnt := t.TempDir()
	fstest.Run(t, "mount", "-o", "loop,ro", recovered, mnt)
	defer fstest.Run(t, "umount", mnt)
	if n := compareTree(t, fsys, mnt, true, true); n < 100 {
		t.Errorf("compared only %d files", n)
	}
	return rec
}

// TestExternalJournal: a file system whose journal is on another device
// and that needs recovery is read as it is on disk, and says so.
func TestExternalJournal(t *testing.T) {
	fstest.RequireTools(t, "e2fsprogs mount", "mke2fs", "mkfs.ext4", "losetup", "debugfs")
	fstest.RequireRoot(t, "chown, mknod or loop mounts")
	dir := t.TempDir()
	jimg, img := filepath.Join(dir, "journal.img"), filepath.Join(dir, "fs.img")
	fstest.Run(t, "mke2fs", "-q", "-F", "-O", "journal_dev", "-b", "4096", jimg, "8M")
	loop := strings.TrimSpace(fstest.Run(t, "losetup", "-f", "--show", jimg))
	defer fstest.Run(t, "losetup", "-d", loop)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("on disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	fstest.Run(t, "mkfs.ext4", "-q", "-F", "-b", "4096", "-J", "device="+loop, "-d", src, img, "64M")
	fstest.Run(t, "debugfs", "-w", "-R", "feature needs_recovery", img)

	fh, size := fstest.OpenImage(t, jimg)
	if Probe(fh, size) {
		t.Error("Probe accepts an external journal device")
	}
	if _, err := Open(fh, size); !errors.Is(err, vfs.ErrMalformed) {
		t.Errorf("Open of a journal device: %v", err)
	}
	fh.Close()

	fh, size = fstest.OpenImage(t, img)
	fsys, err := Open(fh, size)
	if err != nil {
		t.Fatal(err)
	}
	f := fsys.(*FS)
	if rec := f.Recovery(); !rec.NeedsRecovery || !rec.External || rec.Transactions != 0 {
		t.Errorf("Recovery() = %+v", rec)
	}
	if err := f.JournalWarning(); !errors.Is(err, ErrExternalJournal) {
		t.Errorf("JournalWarning() = %v", err)
	}
	if n := compareTree(t, fsys, src, false, false); n != 1 {
		t.Errorf("compared %d files", n)
	}
}
