package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireTools: on CI (CI=true or CAIRN_REQUIRE_TOOLS=1) a missing tool
// fails the test instead of skipping it.
func requireTools() bool {
	return os.Getenv("CI") == "true" || os.Getenv("CAIRN_REQUIRE_TOOLS") == "1"
}

func needTools(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if requireTools() {
				t.Fatalf("%s is not installed and CI=true or CAIRN_REQUIRE_TOOLS=1 requires it: apt-get install qemu-utils", name)
			}
			t.Skipf("skipping: %s is not installed (apt-get install qemu-utils); set CAIRN_REQUIRE_TOOLS=1 to turn this into a failure", name)
		}
	}
}

func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// qemuIO runs qemu-io commands on a qcow2 image.
func qemuIO(t testing.TB, img string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out := sh(t, "qemu-io", append(args, img)...)
	if strings.Contains(out, "error") || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io %v: %s", cmds, out)
	}
}

// region is a byte range of a test disk.
type region struct{ off, n int64 }

// makeQcow2 builds a qcow2 image of size with seeded random data in the
// regions and returns its path.
func makeQcow2(t testing.TB, dir string, size int64, seed uint64, regions ...region) string {
	t.Helper()
	raw := filepath.Join(dir, "src.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, r := range regions {
		buf := make([]byte, r.n)
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(buf, r.off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	img := filepath.Join(dir, "disk.qcow2")
	sh(t, "qemu-img", "convert", "-t", "unsafe", "-f", "raw", "-O", "qcow2", raw, img)
	os.Remove(raw)
	return img
}

// toRaw is the reference: qemu-img convert -O raw.
func toRaw(t testing.TB, img, format string) string {
	t.Helper()
	out := img + ".ref.raw"
	sh(t, "qemu-img", "convert", "-U", "-t", "unsafe", "-f", format, "-O", "raw", img, out)
	return out
}

// server is a qemu-nbd process serving one export named "disk".
type server struct {
	network, addr string
	cmd           *exec.Cmd
	stderr        *bytes.Buffer
}

// startQemuNBD serves args (image options and image) over network, "unix"
// or "tcp" on 127.0.0.1, and stops the server when the test ends.
func startQemuNBD(t testing.TB, network string, args ...string) *server {
	t.Helper()
	needTools(t, "qemu-nbd")
	s := &server{network: network, stderr: &bytes.Buffer{}}
	base := []string{"--persistent", "--shared=16", "-x", "disk"}
	switch network {
	case "unix":
		dir, err := os.MkdirTemp("", "nbdtest")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		s.addr = filepath.Join(dir, "s.sock")
		base = append(base, "--socket="+s.addr)
	case "tcp":
		port := freePort(t)
		s.addr = fmt.Sprintf("127.0.0.1:%d", port)
		base = append(base, "--bind=127.0.0.1", fmt.Sprintf("--port=%d", port))
	}
	s.cmd = exec.Command("qemu-nbd", append(base, args...)...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, _, err := Query(ctx, s.network, s.addr, "disk", nil, nil)
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) || s.cmd.ProcessState != nil {
			t.Fatalf("qemu-nbd %v did not come up: %v\n%s", args, err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) stop() {
	if s.cmd.Process != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *server) dial(t testing.TB, opts *Options) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, s.network, s.addr, "disk", opts)
	if err != nil {
		t.Fatalf("Dial: %v\n%s", err, s.stderr)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// mapEntry is one line of qemu-img map --output=json.
type mapEntry struct {
	Start   int64 `json:"start"`
	Length  int64 `json:"length"`
	Depth   int   `json:"depth"`
	Present bool  `json:"present"`
	Zero    bool  `json:"zero"`
	Data    bool  `json:"data"`
}

func qemuMap(t testing.TB, img string) []mapEntry {
	t.Helper()
	var m []mapEntry
	if err := json.Unmarshal([]byte(sh(t, "qemu-img", "map", "-U", "--output=json", img)), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// merge coalesces adjacent extents with equal flags.
func merge(ext []Extent) []Extent {
	var out []Extent
	for _, e := range ext {
		if n := len(out); n > 0 && out[n-1].End() == e.Offset && out[n-1].Flags == e.Flags {
			out[n-1].Length += e.Length
			continue
		}
		out = append(out, e)
	}
	return out
}

func collect(t testing.TB, c *Client, off, length int64, name string) []Extent {
	t.Helper()
	var ext []Extent
	err := c.Extents(context.Background(), off, length, name, func(e Extent) error {
		ext = append(ext, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Extents(%s): %v", name, err)
	}
	return ext
}

// compareWithFile reads the whole export in pieces of step bytes from an
// odd start and compares every byte with the reference file.
func compareWithFile(t testing.TB, c *Client, ref string, step int, start int64) {
	t.Helper()
	f, err := os.Open(ref)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if c.Size() != st.Size() {
		t.Fatalf("export size %d, reference %d", c.Size(), st.Size())
	}
	got, want := make([]byte, max(step, int(start))), make([]byte, max(step, int(start)))
	if start > 0 {
		if _, err := c.ReadAt(got[:start], 0); err != nil {
			t.Fatalf("ReadAt(%d, 0): %v", start, err)
		}
		f.ReadAt(want[:start], 0)
		if !bytes.Equal(got[:start], want[:start]) {
			t.Fatalf("ReadAt(%d, 0): byte %d differs", start, firstDiff(got[:start], want[:start]))
		}
	}
	got, want = got[:step], want[:step]
	poison := bytes.Repeat([]byte{0xee}, step) // a read must overwrite every byte, holes too
	for off := start; off < c.Size(); off += int64(step) {
		copy(got, poison)
		n, err := c.ReadAt(got, off)
		m, ferr := readRef(f, want, off)
		if n != m || (err == nil) != (ferr == nil) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v; file gives %d, %v", step, off, n, err, m, ferr)
		}
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt at %d: %v", off, err)
		}
		if !bytes.Equal(got[:n], want[:m]) {
			i := firstDiff(got[:n], want[:m])
			t.Fatalf("ReadAt(%d bytes at %d): byte %d (offset %d) is %#x, want %#x", step, off, i, off+int64(i), got[i], want[i])
		}
	}
}

// readRef reads the reference file like ReadAt, but does not read a range
// that SEEK_DATA says is a hole: reading gigabytes of holes through the
// page cache is what made the 8 GiB test slow.
func readRef(f *os.File, p []byte, off int64) (int, error) {
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return 0, err
	}
	n := int(min(int64(len(p)), max(size-off, 0)))
	var eof error
	if n < len(p) {
		eof = io.EOF
	}
	data, err := f.Seek(off, unix.SEEK_DATA)
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return 0, err
	}
	if err != nil || data >= off+int64(n) { // no data in [off, off+n)
		clear(p[:n])
		return n, eof
	}
	return f.ReadAt(p, off)
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
