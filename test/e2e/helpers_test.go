package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	KiB = int64(1) << 10
	MiB = int64(1) << 20

	// blockSize is cairn's default block size (repo.DefaultBlockSize).
	blockSize = 64 * KiB
	// tableBlocks is cairn's default number of blocks per block table.
	tableBlocks = 1024
	// tableBytes bounds the stored size of one block table (1024 entries of 56 bytes).
	tableBytes = tableBlocks * 56

	testPassword = "correct horse battery staple"

	// cmdTimeout bounds every cairn or qemu command a test runs.
	cmdTimeout = 3 * time.Minute
)

// cairnBin is the binary TestMain builds.
var cairnBin string

func TestMain(m *testing.M) { os.Exit(buildAndRun(m)) }

func buildAndRun(m *testing.M) int {
	if bin := os.Getenv("CAIRN_E2E_BIN"); bin != "" { // test a given binary
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e: CAIRN_E2E_BIN:", err)
			return 1
		}
		cairnBin = abs
		return m.Run()
	}
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "cairn-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	cairnBin = filepath.Join(dir, "cairn")
	goTool := "go"
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			goTool = p
		}
	}
	build := exec.Command(goTool, "build", "-o", cairnBin, "./cli/cairn")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cli/cairn in %s failed: %v\n%s", root, err, out)
		return 1
	}
	return m.Run()
}

// moduleRoot finds the directory holding cairn's go.mod, upwards from here.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		raw, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(raw, []byte("module github.com/cairn-backup/cairn\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find cairn's go.mod above the test directory")
		}
		dir = parent
	}
}

// ---------------------------------------------------------------- tools

func toolsRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("CAIRN_REQUIRE_TOOLS") == "1"
}

// requireTool returns the path of an external tool. When it is missing the
// test fails if CI=true or CAIRN_REQUIRE_TOOLS=1, and is skipped otherwise.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if toolsRequired() {
		t.Fatalf("%s is not installed (PATH=%s) and CI=true or CAIRN_REQUIRE_TOOLS=1 requires it: apt-get install qemu-utils", name, os.Getenv("PATH"))
	}
	t.Skipf("skipping: %s is not installed (apt-get install qemu-utils); set CAIRN_REQUIRE_TOOLS=1 to turn this into a failure", name)
	return ""
}

func haveTool(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}

// ---------------------------------------------------------------- seeds

// testRand returns a generator seeded from CAIRN_E2E_SEED or the clock; the
// seed is logged so that a failing run can be replayed.
func testRand(t testing.TB) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CAIRN_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CAIRN_E2E_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("random seed %d (replay with CAIRN_E2E_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// ---------------------------------------------------------------- processes

// result is what a finished process did.
type result struct {
	args           []string
	stdout, stderr string
	code           int // -1: killed by a signal
	signal         syscall.Signal
	dur            time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("`%s` exited %d after %s\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.dur.Round(time.Millisecond), r.stdout, r.stderr)
}

// proc is a started process.
type proc struct {
	cmd            *exec.Cmd
	cancel         context.CancelFunc
	stdout, stderr bytes.Buffer
	start          time.Time
	done           chan struct{}
	res            result
}

func startProc(t testing.TB, env []string, name string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	p := &proc{cancel: cancel, done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, name, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	p.cmd.WaitDelay = 10 * time.Second
	p.res.args = append([]string{filepath.Base(name)}, args...)
	p.start = time.Now()
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.res.dur = time.Since(p.start)
		p.res.stdout, p.res.stderr = p.stdout.String(), p.stderr.String()
		p.res.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.res.signal = ws.Signal()
		}
		if err != nil && p.res.code == 0 && p.res.signal == 0 {
			p.res.code = -2 // e.g. I/O copying failed
			p.res.stderr += "\n(e2e: " + err.Error() + ")"
		}
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() { // never leave a process behind
		select {
		case <-p.done:
		default:
			p.cmd.Process.Signal(syscall.SIGCONT)
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits for the process and returns what it did.
func (p *proc) wait() result {
	<-p.done
	return p.res
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill9 sends SIGKILL (if the process still runs) and waits. It reports
// whether the process was still running when the signal was sent.
func (p *proc) kill9() (result, bool) {
	if p.exited() {
		return p.res, false
	}
	err := p.cmd.Process.Signal(syscall.SIGKILL)
	r := p.wait()
	return r, err == nil && r.signal == syscall.SIGKILL
}

func (p *proc) signal(t testing.TB, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatalf("send %v to pid %d: %v", s, p.cmd.Process.Pid, err)
	}
}

// cleanEnv is this process's environment without any CAIRN_* variable, so
// that a developer's settings cannot leak into a test.
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CAIRN_") {
			out = append(out, kv)
		}
	}
	return out
}

// runTool runs an external program and returns what it did.
func runTool(t testing.TB, name string, args ...string) result {
	t.Helper()
	return startProc(t, cleanEnv(), name, args...).wait()
}

func mustTool(t testing.TB, name string, args ...string) result {
	t.Helper()
	r := runTool(t, name, args...)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	return r
}

func qemuImg(t testing.TB, args ...string) result {
	t.Helper()
	return mustTool(t, "qemu-img", args...)
}

// ---------------------------------------------------------------- repositories

// repoEnv is a repository and the environment cairn runs with against it.
type repoEnv struct {
	t   testing.TB
	dir string
	env []string
}

// newRepoDir returns a repoEnv for a repository directory that does not
// exist yet, unlocked with a password.
func newRepoDir(t testing.TB) *repoEnv {
	t.Helper()
	return &repoEnv{t: t, dir: filepath.Join(t.TempDir(), "repo"), env: append(cleanEnv(), "CAIRN_PASSWORD="+testPassword)}
}

// initRepo creates an encrypted repository (password in CAIRN_PASSWORD).
func initRepo(t testing.TB, extra ...string) *repoEnv {
	t.Helper()
	r := newRepoDir(t)
	r.initWith(extra...)
	return r
}

// initKeyRepo creates an encrypted repository unlocked by a key file that
// init generates (CAIRN_KEY_FILE); it spares every command the password
// hashing, which costs about half a second of CPU.
func initKeyRepo(t testing.TB, extra ...string) *repoEnv {
	t.Helper()
	r := newRepoDir(t).withoutEnv("CAIRN_PASSWORD")
	key := filepath.Join(filepath.Dir(r.dir), "repo.key")
	r = r.withEnv("CAIRN_KEY_FILE=" + key)
	r.initWith(extra...)
	if fileSize(t, key) != 32 {
		t.Fatalf("init --key-file did not create a 32-byte key file %s", key)
	}
	return r
}

// initPlainRepo creates an unencrypted repository.
func initPlainRepo(t testing.TB, extra ...string) *repoEnv {
	t.Helper()
	r := newRepoDir(t).withoutEnv("CAIRN_PASSWORD")
	r.initWith(append([]string{"--encryption", "none"}, extra...)...)
	return r
}

func (r *repoEnv) initWith(extra ...string) {
	t := r.t
	t.Helper()
	res := r.mustRun(append([]string{"init", "--json"}, extra...)...)
	var out struct {
		ID         string `json:"id"`
		Encryption string `json:"encryption"`
		BlockSize  int    `json:"block_size"`
	}
	decodeJSON(t, res, &out)
	if out.ID == "" {
		t.Fatalf("init --json printed no repository id:\n%v", res)
	}
}

// withEnv returns a copy of r whose commands also get the given variables.
func (r *repoEnv) withEnv(kv ...string) *repoEnv {
	c := *r
	c.env = append(append([]string{}, r.env...), kv...)
	return &c
}

// withoutEnv returns a copy of r without the variables named.
func (r *repoEnv) withoutEnv(names ...string) *repoEnv {
	c := *r
	c.env = nil
	for _, kv := range r.env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			c.env = append(c.env, kv)
		}
	}
	return &c
}

func (r *repoEnv) args(args []string) []string {
	return append(append([]string{}, args...), "--repo", r.dir)
}

// start starts `cairn ARGS --repo DIR`.
func (r *repoEnv) start(args ...string) *proc {
	r.t.Helper()
	return startProc(r.t, r.env, cairnBin, r.args(args)...)
}

// run runs `cairn ARGS --repo DIR` and returns what it did.
func (r *repoEnv) run(args ...string) result {
	r.t.Helper()
	res := r.start(args...).wait()
	if res.dur > 3*time.Second {
		r.t.Logf("slow: cairn %s took %s", strings.Join(args, " "), res.dur.Round(time.Millisecond))
	}
	return res
}

// mustRun runs cairn and fails the test unless it exits 0.
func (r *repoEnv) mustRun(args ...string) result {
	r.t.Helper()
	res := r.run(args...)
	if res.code != 0 {
		r.t.Fatalf("%v", res)
	}
	return res
}

func decodeJSON(t testing.TB, res result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(res.stdout), v); err != nil {
		t.Fatalf("decode JSON output: %v\n%v", err, res)
	}
}

// backupSummary is `cairn backup --json`.
type backupSummary struct {
	ID          string  `json:"id"`
	VM          string  `json:"vm"`
	Parent      string  `json:"parent"`
	LogicalSize int64   `json:"logical_size"`
	BytesRead   int64   `json:"bytes_read"`
	DataBytes   int64   `json:"data_bytes"`
	NewBytes    int64   `json:"new_bytes"`
	StoredBytes int64   `json:"stored_bytes"`
	Duration    float64 `json:"duration_seconds"`
}

// pointSummary is one entry of `cairn list --json`.
type pointSummary struct {
	ID          string            `json:"id"`
	VM          string            `json:"vm"`
	Time        time.Time         `json:"time"`
	Disks       []string          `json:"disks"`
	LogicalSize int64             `json:"logical_size"`
	NewBytes    int64             `json:"new_bytes"`
	StoredBytes int64             `json:"stored_bytes"`
	Tags        map[string]string `json:"tags"`
}

// backup runs `cairn backup --json --vm VM --disk NAME=PATH...`.
func (r *repoEnv) backup(vm string, disks ...string) backupSummary {
	r.t.Helper()
	return r.backupWith(vm, nil, disks...)
}

// backupWith is backup with extra arguments (e.g. --tag K=V).
func (r *repoEnv) backupWith(vm string, extra []string, disks ...string) backupSummary {
	r.t.Helper()
	args := append([]string{"backup", "--json", "--vm", vm}, extra...)
	for _, d := range disks {
		args = append(args, "--disk", d)
	}
	var s backupSummary
	decodeJSON(r.t, r.mustRun(args...), &s)
	if s.ID == "" || s.VM != vm {
		r.t.Fatalf("backup summary lacks id or has the wrong vm: %+v", s)
	}
	return s
}

// points returns `cairn list --json`.
func (r *repoEnv) points() []pointSummary {
	r.t.Helper()
	var ps []pointSummary
	decodeJSON(r.t, r.mustRun("list", "--json"), &ps)
	return ps
}

func pointIDs(ps []pointSummary) []string {
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}

// checkReport is `cairn check --json`.
type checkReport struct {
	Points    int      `json:"points"`
	Packs     int      `json:"packs"`
	Blobs     int      `json:"blobs_referenced"`
	PacksRead int      `json:"packs_read"`
	BytesRead int64    `json:"bytes_read"`
	Errors    []string `json:"errors"`
	Warnings  []string `json:"warnings"`
}

// check runs `cairn check --json ARGS` and fails the test unless it exits 0
// with no errors.
func (r *repoEnv) check(args ...string) checkReport {
	r.t.Helper()
	res := r.run(append([]string{"check", "--json"}, args...)...)
	var rep checkReport
	if json.Unmarshal([]byte(res.stdout), &rep) != nil && res.code == 0 {
		r.t.Fatalf("check printed no JSON report:\n%v", res)
	}
	if res.code != 0 || len(rep.Errors) > 0 {
		r.t.Fatalf("check failed:\n%v", res)
	}
	return rep
}

// restore runs `cairn restore disk POINT DISK --to PATH ARGS` and fails the
// test unless it succeeds.
func (r *repoEnv) restore(point, disk, to string, args ...string) {
	r.t.Helper()
	r.mustRun(append([]string{"restore", "disk", point, disk, "--to", to, "--quiet"}, args...)...)
}

// packFiles lists REPO/packs/*/*.pack.
func (r *repoEnv) packFiles() []string {
	r.t.Helper()
	names, err := filepath.Glob(filepath.Join(r.dir, "packs", "*", "*.pack"))
	if err != nil {
		r.t.Fatal(err)
	}
	return names
}

// packBytes is the total size of the packs.
func (r *repoEnv) packBytes() int64 {
	r.t.Helper()
	var n int64
	for _, p := range r.packFiles() {
		st, err := os.Stat(p)
		if err != nil {
			r.t.Fatal(err)
		}
		n += st.Size()
	}
	return n
}

// ---------------------------------------------------------------- images

// image writes a disk image with Go: a sparse file of a given size with
// data at chosen offsets; everything not written stays a hole.
type image struct {
	t    testing.TB
	path string
	f    *os.File
	size int64
	data int64 // bytes written (may overlap)
}

func newImage(t testing.TB, path string, size int64) *image {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	im := &image{t: t, path: path, f: f, size: size}
	t.Cleanup(func() { im.f.Close() })
	return im
}

// openImage opens an existing raw image to change it.
func openImage(t testing.TB, path string) *image {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	im := &image{t: t, path: path, f: f, size: st.Size()}
	t.Cleanup(func() { im.f.Close() })
	return im
}

func (im *image) write(off int64, p []byte) {
	im.t.Helper()
	if off < 0 || off+int64(len(p)) > im.size {
		im.t.Fatalf("write %d bytes at %d: outside the %d-byte image %s", len(p), off, im.size, im.path)
	}
	if _, err := im.f.WriteAt(p, off); err != nil {
		im.t.Fatal(err)
	}
	im.data += int64(len(p))
}

// random writes n bytes of seeded, incompressible data at off.
func (im *image) random(off, n int64, seed uint64) *image {
	im.t.Helper()
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	copy(s[8:], "cairn-e2e-random")
	g := rand.NewChaCha8(s)
	buf := make([]byte, min(n, 4*MiB))
	for done := int64(0); done < n; {
		c := min(int64(len(buf)), n-done)
		g.Read(buf[:c])
		im.write(off+done, buf[:c])
		done += c
	}
	return im
}

// text writes n bytes of compressible, log-like lines at off.
func (im *image) text(off, n int64, seed uint64) *image {
	im.t.Helper()
	r := rand.New(rand.NewPCG(seed, 42))
	words := []string{"backup", "restore", "disk", "block", "pack", "index", "prune", "snapshot", "vda", "qcow2", "kernel", "systemd", "sshd", "nginx"}
	var b bytes.Buffer
	for int64(b.Len()) < n {
		fmt.Fprintf(&b, "2026-11-%02dT%02d:%02d:%02dZ node%02d %s[%d]: %s %s id=%08x bytes=%d\n",
			1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(16), words[r.IntN(len(words))],
			1000+r.IntN(30000), words[r.IntN(len(words))], words[r.IntN(len(words))], r.Uint32(), r.IntN(1<<24))
	}
	im.write(off, b.Bytes()[:n])
	return im
}

// fill writes n bytes of value v at off.
func (im *image) fill(off, n int64, v byte) *image {
	im.t.Helper()
	im.write(off, bytes.Repeat([]byte{v}, int(n)))
	return im
}

// dup copies n bytes from src to dst within the image (duplicate content).
func (im *image) dup(src, dst, n int64) *image {
	im.t.Helper()
	buf := make([]byte, n)
	if _, err := im.f.ReadAt(buf, src); err != nil {
		im.t.Fatal(err)
	}
	im.write(dst, buf)
	return im
}

// mbr writes a plausible DOS partition table in the first sector.
func (im *image) mbr() *image {
	im.t.Helper()
	sec := make([]byte, 512)
	copy(sec, "\xfa\xeb\x63cairn-e2e boot code")
	// partition 1: type 0x83 from sector 2048, to the end of the disk
	p := sec[446:]
	p[4] = 0x83
	putLE32(p[8:], 2048)
	putLE32(p[12:], uint32(im.size/512-2048))
	sec[510], sec[511] = 0x55, 0xaa
	im.write(0, sec)
	return im
}

func putLE32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

func (im *image) close() {
	im.t.Helper()
	if err := im.f.Sync(); err != nil {
		im.t.Fatal(err)
	}
}

// ---------------------------------------------------------------- files

// sameBytes fails the test unless files a and b have the same size and bytes.
func sameBytes(t testing.TB, a, b string) {
	t.Helper()
	if err := diffFiles(a, b); err != nil {
		t.Fatal(err)
	}
}

func diffFiles(a, b string) error {
	fa, err := os.Open(a)
	if err != nil {
		return err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return err
	}
	defer fb.Close()
	sa, _ := fa.Stat()
	sb, _ := fb.Stat()
	if sa.Size() != sb.Size() {
		return fmt.Errorf("%s has %d bytes, %s has %d", a, sa.Size(), b, sb.Size())
	}
	ba, bb := make([]byte, 4*MiB), make([]byte, 4*MiB)
	for off := int64(0); off < sa.Size(); {
		n := int(min(int64(len(ba)), sa.Size()-off))
		if _, err := io.ReadFull(fa, ba[:n]); err != nil {
			return err
		}
		if _, err := io.ReadFull(fb, bb[:n]); err != nil {
			return err
		}
		if !bytes.Equal(ba[:n], bb[:n]) {
			for i := range n {
				if ba[i] != bb[i] {
					return fmt.Errorf("%s and %s differ at offset %d (%#x vs %#x)", a, b, off+int64(i), ba[i], bb[i])
				}
			}
		}
		off += int64(n)
	}
	return nil
}

// qemuCompare runs `qemu-img compare` (formats probed) and fails the test
// unless it says the images are identical.
func qemuCompare(t testing.TB, a, b string) {
	t.Helper()
	r := runTool(t, "qemu-img", "compare", a, b)
	if r.code != 0 || !strings.Contains(r.stdout, "Images are identical") {
		t.Fatalf("qemu-img compare %s %s: not identical:\n%v", a, b, r)
	}
}

// qemuCheck runs `qemu-img check` on a qcow2 image and fails the test unless
// it is clean.
func qemuCheck(t testing.TB, path string) {
	t.Helper()
	r := runTool(t, "qemu-img", "check", "-f", "qcow2", path)
	if r.code != 0 || !strings.Contains(r.stdout, "No errors were found") {
		t.Fatalf("qemu-img check %s is not clean:\n%v", path, r)
	}
}

// qemuInfo returns `qemu-img info --output=json` of path.
func qemuInfo(t testing.TB, path string) map[string]any {
	t.Helper()
	r := qemuImg(t, "info", "--output=json", path)
	var m map[string]any
	decodeJSON(t, r, &m)
	return m
}

// toRaw converts any image qemu-img reads to a raw file (the reference).
func toRaw(t testing.TB, src, dst string) {
	t.Helper()
	qemuImg(t, "convert", "-O", "raw", src, dst)
}

// allocated returns the bytes a file occupies on disk.
func allocated(t testing.TB, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// copySparse copies a raw file, leaving all-zero 64 KiB chunks as holes.
func copySparse(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(st.Size()); err != nil {
		t.Fatal(err)
	}
	buf, zero := make([]byte, 64*KiB), make([]byte, 64*KiB)
	for off := int64(0); off < st.Size(); off += int64(len(buf)) {
		n, err := in.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := out.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// dirEntries lists every name in dir, hidden files included.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// treeState maps every file under dir (relative path) to "size mtime".
func treeState(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out[rel] = fmt.Sprintf("%d %d", info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// duBytes is the allocated size of every file under dir.
func duBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			n += st.Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// cloneRepo copies a repository for an experiment: packs (immutable files,
// only ever created and deleted) are hard-linked, everything else copied.
func cloneRepo(t testing.TB, r *repoEnv, dst string) *repoEnv {
	t.Helper()
	err := filepath.Walk(r.dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(r.dir, p)
		to := filepath.Join(dst, rel)
		switch {
		case info.IsDir():
			return os.MkdirAll(to, 0o700)
		case strings.HasPrefix(rel, "packs"+string(filepath.Separator)):
			return os.Link(p, to)
		default:
			raw, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(to, raw, info.Mode().Perm())
		}
	})
	if err != nil {
		t.Fatalf("clone repository: %v", err)
	}
	c := *r
	c.dir = dst
	return &c
}

// waitFor polls cond every few milliseconds until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	return cond()
}

// lockHolders returns the lock records in REPO/locks.
func (r *repoEnv) lockHolders() []string {
	names, _ := filepath.Glob(filepath.Join(r.dir, "locks", "*.json"))
	return names
}
