package mount

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileReadsNeedNoOpen: copying many guest files costs their READ
// requests only. The first OPEN is answered ENOSYS, after which the kernel
// opens files without asking and sends neither RELEASE nor FLUSH; the page
// cache is kept across opens. Counted in the daemon's FUSE request log.
func TestFileReadsNeedNoOpen(t *testing.T) {
	f := newGuestFixture(t)
	m := startMount(t, f.repo, "--debug-fuse")
	many := m.path("guest", "latest", "vda", "p2", "srv", "many")
	out := t.TempDir()
	run(t, "cp", "-a", many, out)
	files, err := os.ReadDir(filepath.Join(out, "many"))
	if err != nil || len(files) != 600 {
		t.Fatalf("copied %d files (%v), want 600", len(files), err)
	}
	// Read one file twice: the second read must come from the page cache.
	one := filepath.Join(many, files[0].Name())
	want, err := os.ReadFile(one)
	if err != nil {
		t.Fatal(err)
	}
	readsBefore := strings.Count(m.stderr.String(), " READ ")
	got, err := os.ReadFile(one)
	if err != nil || string(got) != string(want) {
		t.Fatalf("second read of %s: %v", one, err)
	}
	// go-fuse opens a file of its own at mount time (node 2^64-1, its
	// poll check): leave it out.
	var log strings.Builder
	for _, l := range strings.Split(m.stderr.String(), "\n") {
		if !strings.Contains(l, " n18446744073709551615 ") {
			log.WriteString(l + "\n")
		}
	}
	counts := map[string]int{}
	for _, op := range []string{"OPEN", "RELEASE", "FLUSH", "READ"} {
		counts[op] = strings.Count(log.String(), " "+op+" ")
	}
	if counts["OPEN"] > 1 || counts["RELEASE"] > 0 || counts["FLUSH"] > 1 {
		t.Errorf("copying 600 files sent OPEN %d, RELEASE %d, FLUSH %d times; want at most one OPEN and FLUSH (answered ENOSYS) and no RELEASE",
			counts["OPEN"], counts["RELEASE"], counts["FLUSH"])
	}
	if counts["READ"] < 600 {
		t.Errorf("only %d READ requests for 600 files: is the log format as expected?\n%s", counts["READ"], tail(log.String(), 2000))
	}
	if after := strings.Count(m.stderr.String(), " READ "); after != readsBefore {
		t.Errorf("reading a file again sent %d READ requests: the page cache was dropped on open", after-readsBefore)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
