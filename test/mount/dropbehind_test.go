package mount

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/testimg"
)

// TestStreamingReadDropsBehind: reading a 256 MiB disk image from start to
// end through the mount returns its bytes and leaves only the last part of
// it in the kernel's page cache (as fincore counts it): the daemon has the
// kernel drop what a long sequential reader left far behind.
func TestStreamingReadDropsBehind(t *testing.T) {
	requireFUSE(t)
	fincore := testimg.RequireTool(t, "fincore")
	const size, data = 256 << 20, 128 << 20
	dir := t.TempDir()
	img := filepath.Join(dir, "big.raw")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{7})
	if _, err := io.CopyN(f, rng, data); err != nil { // data, then a hole
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	repoDir := filepath.Join(dir, "repo")
	t.Setenv("CAIRN_PASSWORD", "test")
	cairn(t, repoDir, "init", "-q")
	cairn(t, repoDir, "backup", "-q", "--vm", "big", "--disk", "vda="+img)

	m := startMount(t, repoDir)
	vda := m.path("big", "latest", "vda.raw")
	src, err := os.Open(vda)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{src}, make([]byte, 1<<20))
	src.Close()
	if err != nil || n != size {
		t.Fatalf("read %d bytes of %s: %v", n, vda, err)
	}
	if got, want := [32]byte(h.Sum(nil)), fileSHA(t, img); got != want {
		t.Fatalf("%s does not hold the image's bytes", vda)
	}
	// At most the last 64 MiB, a 16 MiB step and what the kernel read
	// ahead stay; without dropping, all 256 MiB would.
	const bound = 144 << 20
	eventually(t, 5*time.Second, func() error {
		out, err := exec.Command(fincore, "--bytes", "--noheadings", "--output", "RES", vda).CombinedOutput()
		if err != nil {
			return fmt.Errorf("fincore %s: %v: %s", vda, err, out)
		}
		res, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
		if err != nil {
			return fmt.Errorf("fincore output %q: %v", out, err)
		}
		if res > bound {
			return fmt.Errorf("after reading %s once, %d MiB of it stay in the page cache, want at most %d MiB", vda, res>>20, bound>>20)
		}
		return nil
	})
}
