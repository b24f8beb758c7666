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

	"github.com/cairn-backup/cairn/fs/testimg"
	"github.com/cairn-backup/cairn/repo"
)

// TestBenchMount measures the mount with a real image; it only runs when
// CAIRN_BENCH_IMAGE names one (e.g. made with scripts/mkdisk.sh --size 8G
// --data 3G). CAIRN_BENCH_REPO reuses a repository holding a restore
// point of VM "bench" of that image (CAIRN_PASSWORD unlocks it).
//
// As root it also measures the guest tree against a kernel loop mount of
// partition 2 (CAIRN_BENCH_GUEST_DIR, default usr; copies go to
// CAIRN_BENCH_TMP) and ls -l of CAIRN_BENCH_BIG_DIR (default srv/many, made
// by mkdisk.sh --many 5000). scripts/bench-mount.sh runs it.
//
//	CAIRN_BENCH_IMAGE=/var/tmp/disk.raw go test ./test/mount -run TestBenchMount -v -timeout 30m
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
	dropCaches(t)
	srcCat := catTime(t, image)
	start := time.Now()
	catTime(t, image)
	t.Logf("cat of the source image: %.0f MB/s cold, %.0f MB/s from the page cache",
		float64(st.Size())/srcCat.Seconds()/1e6, float64(st.Size())/time.Since(start).Seconds()/1e6)
	// Each run below starts with the page cache dropped: otherwise the
	// 8 GiB that the previous run left cached must be reclaimed page by
	// page while the next one reads, and the later runs pay for the earlier.
	//
	// dd and cat of vda.raw, twice, each time next to the FUSE ceiling:
	// the same dd through a FUSE server that only hands over memory, with
	// the mount's options, readahead and drop-behind. Between the two lies
	// what cairn does per byte; above the ceiling nothing on this
	// machine's FUSE goes. The rounds say how much of a difference is the
	// host's mood.
	for i := 0; i < 2; i++ {
		ceil := fuseCeiling(t, st.Size(), true)
		t.Logf("FUSE ceiling, dd bs=1M of as many bytes from a server that only hands over memory: %s", ceil)
		dropCaches(t)
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
		rate := float64(st.Size()) / el.Seconds()
		t.Logf("sequential dd bs=1M, fresh mount (cache %s): %.0f MB/s = %.2fx the FUSE ceiling (%s; daemon CPU %.2f s, %.2f CPU-s/GiB; max RSS %s)",
			cache, rate/1e6, rate/ceil.rate, ddRate(out), cpu, cpu/(float64(st.Size())/(1<<30)), procHWM(t, m.cmd.Process.Pid))
		m.stop(15)

		dropCaches(t)
		m = startMount(t, repoDir, "--cache-size", cache)
		el = catTime(t, m.path("bench", "latest", "vda.raw"))
		rate = float64(st.Size()) / el.Seconds()
		t.Logf("cat of vda.raw, fresh mount: %.0f MB/s = %.2fx the FUSE ceiling, %.2fx cat of the source image (cold)",
			rate/1e6, rate/ceil.rate, srcCat.Seconds()/el.Seconds())
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
		pick := func(rng *rand.Rand) int64 {
			if c.data {
				return dataBlocks[rng.IntN(len(dataBlocks))]*65536 + rng.Int64N(16)*4096
			}
			return rng.Int64N(st.Size()/4096) * 4096
		}
		// The reference: the same reads of the source image file, cold,
		// which is what the disk under the repository can do.
		dropCaches(t)
		ref, _ := randomReads(t, image, c.qd, pick)
		dropCaches(t)
		m := startMount(t, repoDir, "--cache-size", cache)
		rate, worst := randomReads(t, m.path("bench", "latest", "vda.raw"), c.qd, pick)
		t.Logf("random 4 KiB reads, %s, %d in parallel, cold: %.0f reads/s = %.2fx the source image's %.0f reads/s (slowest %s)",
			c.name, c.qd, rate, rate/ref, ref, worst.Round(time.Microsecond))
		m.stop(15)
	}
	benchWarmReads(t, repoDir, cache, dataBlocks)
	benchGuest(t, repoDir, image, cache)
}

// randomReads reads 4 KiB at offsets from pick for 5 seconds, qd readers
// at a time, and returns the reads per second and the slowest read.
func randomReads(t *testing.T, path string, qd int, pick func(*rand.Rand) int64) (float64, time.Duration) {
	var n atomic.Int64
	var lat sync.Mutex
	var worst time.Duration
	deadline := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for g := 0; g < qd; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			f, err := os.Open(path)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			rng := rand.New(rand.NewPCG(uint64(g), 42))
			buf := make([]byte, 4096)
			for time.Now().Before(deadline) {
				off := pick(rng)
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
	return float64(n.Load()) / 5, worst
}

// benchWarmReads reads the same 20,000 random 4 KiB blocks of stored data
// twice on a fresh mount: the first pass is cold, the second warm (the
// kernel's page cache and cairn's block cache).
func benchWarmReads(t *testing.T, repoDir, cache string, dataBlocks []int64) {
	dropCaches(t)
	m := startMount(t, repoDir, "--cache-size", cache)
	defer m.stop(15)
	f, err := os.Open(m.path("bench", "latest", "vda.raw"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(7, 7))
	offs := make([]int64, 20000)
	for i := range offs {
		offs[i] = dataBlocks[rng.IntN(len(dataBlocks))]*65536 + rng.Int64N(16)*4096
	}
	buf := make([]byte, 4096)
	for pass, name := range []string{"cold", "warm"} {
		start := time.Now()
		for _, off := range offs {
			if _, err := f.ReadAt(buf, off); err != nil {
				t.Fatal(err)
			}
		}
		el := time.Since(start)
		t.Logf("random 4 KiB reads of stored data, 1 at a time, %s (pass %d over the same 20,000 blocks): %.0f reads/s",
			name, pass+1, float64(len(offs))/el.Seconds())
	}
}

// benchGuest measures the guest file tree: cp -a of the biggest directory
// of partition 2 from the mount against the same copy from a kernel loop
// mount of the partition (both with cold caches), and the first ls -l of
// a restore point's root and of a big guest directory.
func benchGuest(t *testing.T, repoDir, image, cache string) {
	if os.Geteuid() != 0 {
		t.Log("guest figures skipped: the reference loop mount needs root")
		return
	}
	var p2 *testimg.Part
	for _, p := range testimg.Layout(t, image) {
		if p.Number == 2 {
			p2 = &p
		}
	}
	if p2 == nil {
		t.Log("guest figures skipped: the image has no partition 2")
		return
	}
	dir := envOr("CAIRN_BENCH_GUEST_DIR", "usr")
	tmp := envOr("CAIRN_BENCH_TMP", t.TempDir())
	ref := loopMount(t, image, p2.Start, p2.Size, "ext4")
	cp := func(src string) (time.Duration, int64) {
		dst, err := os.MkdirTemp(tmp, "cp-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dst)
		dropCaches(t)
		start := time.Now()
		if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp -a %s: %v\n%s", src, err, out)
		}
		el := time.Since(start)
		out, _ := exec.Command("du", "-sb", "--apparent-size", dst).Output()
		var n int64
		fmt.Sscan(string(out), &n)
		return el, n
	}
	kel, kn := cp(filepath.Join(ref, dir))
	m := startMount(t, repoDir, "--cache-size", cache)
	fel, fn := cp(m.path("bench", "latest", "vda", "p2", dir))
	t.Logf("cp -a /%s (%.2f GB): kernel loop mount %.0f MB/s, cairn mount %.0f MB/s = %.0f%% (daemon max RSS %s)",
		dir, float64(kn)/1e9, float64(kn)/kel.Seconds()/1e6, float64(fn)/fel.Seconds()/1e6,
		100*kel.Seconds()/fel.Seconds(), procHWM(t, m.cmd.Process.Pid))
	m.stop(15)

	m = startMount(t, repoDir, "--cache-size", cache)
	defer m.stop(15)
	lsl := func(path string) (time.Duration, int) {
		start := time.Now()
		out, err := exec.Command("ls", "-l", path).Output()
		if err != nil {
			t.Fatalf("ls -l %s: %v", path, err)
		}
		return time.Since(start), strings.Count(string(out), "\n")
	}
	el, n := lsl(m.path("bench", "latest") + "/")
	t.Logf("first ls -l of a restore point's root: %s (%d lines)", el.Round(time.Microsecond), n)
	big := envOr("CAIRN_BENCH_BIG_DIR", "srv/many")
	el, n = lsl(m.path("bench", "latest", "vda", "p2", big))
	el2, _ := lsl(m.path("bench", "latest", "vda", "p2", big))
	t.Logf("first ls -l of /%s (%d entries): %s; again: %s", big, n-1, el.Round(time.Microsecond), el2.Round(time.Microsecond))
}

// catTime is how long cat takes to read path to the end.
func catTime(t *testing.T, path string) time.Duration {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	cmd := exec.Command("cat", path)
	cmd.Stdout = null // cat writes to /dev/null itself, as in a shell
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("cat %s: %v", path, err)
	}
	return time.Since(start)
}

// dropCaches empties the kernel's page cache (root), so that both sides
// of a comparison start cold.
func dropCaches(t *testing.T) {
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		t.Logf("could not drop the page cache (%v): figures may be warm", err)
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
