package mount

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/testimg"
)

// cairnBin is the binary TestMain builds: the mount runs in a child
// process, so that the test process only reads (a process that both
// serves and reads a FUSE mount can deadlock).
var cairnBin string

func TestMain(m *testing.M) { os.Exit(buildAndRun(m)) }

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "cairn-fs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cairnBin = filepath.Join(dir, "cairn")
	goTool := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-o", cairnBin, "./cli/cairn")
	build.Dir = "../.." // the module root, from test/mount
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cli/cairn: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// requireFUSE fails (CI=true or CAIRN_REQUIRE_TOOLS=1) or skips the test
// when FUSE cannot be used here.
func requireFUSE(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		missing = append(missing, "fusermount3")
	}
	if len(missing) == 0 {
		return
	}
	if testimg.Required() {
		t.Fatalf("FUSE is not usable (missing %s) and CI=true or CAIRN_REQUIRE_TOOLS=1 requires it: apt-get install fuse3, and give the container /dev/fuse", strings.Join(missing, ", "))
	}
	t.Skipf("skipping: FUSE is not usable here (missing %s)", strings.Join(missing, ", "))
}

// cairn runs the binary against repo and fails the test if it fails.
func cairn(t *testing.T, repoDir string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin, args...)
	cmd.Env = append(os.Environ(), "CAIRN_REPO="+repoDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mountProc is a running `cairn mount`.
type mountProc struct {
	t      *testing.T
	dir    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startMount mounts repoDir on a new directory and waits until the mount
// is there.
func startMount(t *testing.T, repoDir string, args ...string) *mountProc {
	t.Helper()
	requireFUSE(t)
	mp := t.TempDir()
	cmd := exec.Command(cairnBin, append([]string{"mount", mp, "--cache-size", "64MiB"}, args...)...)
	cmd.Env = append(os.Environ(), "CAIRN_REPO="+repoDir)
	m := &mountProc{t: t, dir: mp, cmd: cmd, stderr: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = m.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.err = cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		select {
		case <-m.exited:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-m.exited
			}
		}
		if mounted(mp) {
			exec.Command("fusermount3", "-u", "-z", mp).Run()
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !mounted(mp) {
		select {
		case <-m.exited:
			t.Fatalf("cairn mount exited: %v\n%s", m.err, m.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not mounted after 20 s\n%s", mp, m.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

// path joins names onto the mount point.
func (m *mountProc) path(names ...string) string {
	return filepath.Join(append([]string{m.dir}, names...)...)
}

// stop sends sig and checks that the mount exits 0 and unmounts.
func (m *mountProc) stop(sig syscall.Signal) {
	m.t.Helper()
	m.cmd.Process.Signal(sig)
	m.wait()
}

// wait checks that the mount process exits 0 within 10 s, unmounted.
func (m *mountProc) wait() {
	m.t.Helper()
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		m.t.Fatalf("cairn mount still running 10 s after being stopped\n%s", m.stderr)
	}
	if m.err != nil {
		m.t.Fatalf("cairn mount: %v\n%s", m.err, m.stderr)
	}
	if mounted(m.dir) {
		m.t.Fatalf("%s still mounted after cairn mount exited", m.dir)
	}
}

// mounted reports whether a cairn file system is mounted on dir.
func mounted(dir string) bool {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[1] == dir && fields[2] == "fuse.cairn" {
			return true
		}
	}
	return false
}

// run runs a tool and returns its combined output; it fails the test
// unless the tool exits 0.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func fileSHA(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// readAt reads n bytes of path at off.
func readAt(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, n)
	k, err := f.ReadAt(b, off)
	if err == io.EOF && k == n {
		err = nil
	}
	return b[:k], err
}

// eventually retries fn until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isErrno(err error, want syscall.Errno) bool {
	var e syscall.Errno
	return errors.As(err, &e) && e == want
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
