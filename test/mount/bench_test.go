package mount

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo"
)

// TestBenchMount measures the mount with a real image; it only runs when
// CAIRN_BENCH_IMAGE names one (e.g. made with scripts/mkdisk.sh --size 8G
// --data 3G). CAIRN_BENCH_REPO reuses a repository holding a restore
// point of VM "bench" of that image (CAIRN_PASSWORD unlocks it).
//
//	CAIRN_BENCH_IMAGE=/var/tmp/disk.raw go test ./fs -run TestBenchMount -v -timeout 30m
func TestBenchMount(t *testing.T) {
	image := os.Getenv("CAIRN_BENCH_IMAGE")
	if image == "" {
		t.Skip("set CAIRN_BENCH_IMAGE to a raw disk image to measure the mount")
	}
	requireFUSE(t)
	repoDir := os.Getenv("CAIRN_BENCH_REPO")
	if repoDir == "" {
		repoDir = filepath.Join(t.TempDir(), "repo")
		t.Setenv("CAIRN_PASSWORD", "bench")
		cairn(t, repoDir, "init", "-q")
		start := time.Now()
		cairn(t, repoDir, "backup", "-q", "--vm", "bench", "--disk", "vda="+image)
		t.Logf("backup took %s", time.Since(start).Round(time.Millisecond))
	}
	st, _ := os.Stat(image)
	t.Logf("image %s: %.2f GiB", image, float64(st.Size())/(1<<30))

	cache := envOr("CAIRN_BENCH_CACHE", "256MiB")
	for i := 0; i < 2; i++ {
		m := startMount(t, repoDir, "--cache-size", cache)
		img := m.path("bench", "latest", "vda.raw")
		cpu0 := procCPU(t, m.cmd.Process.Pid)
		start := time.Now()
		out, err := exec.Command("dd", "if="+img, "of=/dev/null", "bs=1M").CombinedOutput()
		if err != nil {
			t.Fatalf("dd: %v\n%s", err, out)
		}
		el := time.Since(start)
		cpu := procCPU(t, m.cmd.Process.Pid) - cpu0
		t.Logf("sequential dd bs=1M, fresh mount (cache %s): %.0f MB/s (%s; daemon CPU %.2f s, %.2f CPU-s/GiB; max RSS %s)",
			cache, float64(st.Size())/el.Seconds()/1e6, ddRate(out), cpu, cpu/(float64(st.Size())/(1<<30)), procHWM(t, m.cmd.Process.Pid))
		m.stop(15)
	}

	// Random 4 KiB reads on a fresh mount: over the whole disk, and over
	// stored (non-zero) blocks only.
	dataBlocks := storedBlocks(t, repoDir)
	for _, c := range []struct {
		name string
		qd   int
		data bool
	}{{"anywhere", 1, false}, {"stored blocks", 1, true}, {"stored blocks", 8, true}} {
		m := startMount(t, repoDir, "--cache-size", cache)
		img := m.path("bench", "latest", "vda.raw")
		var n atomic.Int64
		var lat sync.Mutex
		var worst time.Duration
		deadline := time.Now().Add(5 * time.Second)
		var wg sync.WaitGroup
		for g := 0; g < c.qd; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				f, err := os.Open(img)
				if err != nil {
					t.Error(err)
					return
				}
				defer f.Close()
				rng := rand.New(rand.NewPCG(uint64(g), 42))
				buf := make([]byte, 4096)
				for time.Now().Before(deadline) {
					off := rng.Int64N(st.Size()/4096) * 4096
					if c.data {
						off = dataBlocks[rng.IntN(len(dataBlocks))]*65536 + rng.Int64N(16)*4096
					}
					t0 := time.Now()
					if _, err := f.ReadAt(buf, off); err != nil {
						t.Error(err)
						return
					}
					d := time.Since(t0)
					lat.Lock()
					worst = max(worst, d)
					lat.Unlock()
					n.Add(1)
				}
			}(g)
		}
		wg.Wait()
		t.Logf("random 4 KiB reads, %s, %d in parallel, cold: %.0f reads/s (slowest %s)", c.name, c.qd, float64(n.Load())/5, worst.Round(time.Microsecond))
		m.stop(15)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// storedBlocks lists the non-zero blocks of VM bench's disk vda.
func storedBlocks(t *testing.T, repoDir string) []int64 {
	r, err := repo.Open(repoDir, repo.Credentials{Password: []byte(os.Getenv("CAIRN_PASSWORD"))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	points, err := r.Points()
	if err != nil {
		t.Fatal(err)
	}
	var p *repo.RestorePoint
	for _, q := range points {
		if q.VM == "bench" {
			p = q
		}
	}
	dr, err := r.OpenDisk(p, "vda", 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for b := int64(0); b < p.Disks[0].Blocks(); b++ {
		if e, err := dr.Entry(b); err == nil && !e.IsZero() {
			out = append(out, b)
		}
	}
	return out
}

func procCPU(t *testing.T, pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100
}

func procHWM(t *testing.T, pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(raw); m != nil {
		kb, _ := strconv.Atoi(string(m[1]))
		return fmt.Sprintf("%d MiB", kb/1024)
	}
	return "?"
}

func ddRate(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}
