package nbd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testDisk is a 48 MiB qcow2 with data, holes, zero clusters and discarded
// ranges at awkward offsets, and its raw reference.
func testDisk(t testing.TB) (img, ref string) {
	t.Helper()
	needTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	img = makeQcow2(t, dir, 48<<20, 7,
		region{0, 4096}, region{65536 + 100, 300000}, region{5 << 20, 3 << 20},
		region{20<<20 + 512, 1}, region{(48 << 20) - 70000, 70000})
	qemuIO(t, img, "write -z 6M 1M", "discard 2M 64k", "write -P 0x11 30M 129k")
	return img, toRaw(t, img, "qcow2")
}

func TestQemuReadMatchesConvert(t *testing.T) {
	img, ref := testDisk(t)
	for _, tc := range []struct {
		name    string
		network string
		opts    *Options
	}{
		{"unix", "unix", nil},
		{"tcp", "tcp", nil},
		{"simple-replies", "unix", &Options{NoStructuredReplies: true}},
		{"small-requests", "unix", &Options{RequestSize: 4096 + 512, MaxInFlight: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startQemuNBD(t, tc.network, "-f", "qcow2", "--read-only", img)
			c := s.dial(t, tc.opts)
			if tc.opts != nil && tc.opts.NoStructuredReplies == c.StructuredReplies() {
				t.Fatalf("StructuredReplies() = %v", c.StructuredReplies())
			}
			if !c.Info().ReadOnly() {
				t.Errorf("export not reported read-only: flags %#x", c.Info().Flags)
			}
			compareWithFile(t, c, ref, 5<<20+3, 0)   // pieces larger than the request size
			compareWithFile(t, c, ref, 1<<20-1, 777) // unaligned
		})
	}
}

// TestQemuAlignedServer reads through a server whose minimum block size
// is 4 KiB (blkdebug align=4096): unaligned reads go through bounce
// buffers, aligned ones straight into the caller's buffer.
func TestQemuAlignedServer(t *testing.T) {
	img, ref := testDisk(t)
	s := startQemuNBD(t, "unix", "--read-only", "--image-opts",
		"driver=blkdebug,align=4096,image.driver=qcow2,image.file.driver=file,image.file.filename="+img)
	c := s.dial(t, &Options{RequestSize: 1 << 20, MetaContexts: []string{ContextAllocation}})
	if c.Info().MinBlock != 4096 {
		t.Fatalf("minimum block size %d, want 4096 (blkdebug align)", c.Info().MinBlock)
	}
	compareWithFile(t, c, ref, 3<<20+1, 1)
	compareWithFile(t, c, ref, 4095, 4097)
	ext := collect(t, c, 1, c.Size()-2, ContextAllocation)
	if ext[0].Offset != 1 || ext[len(ext)-1].End() != c.Size()-1 {
		t.Fatalf("extents of [1, size-1) run from %d to %d", ext[0].Offset, ext[len(ext)-1].End())
	}
}

// TestQemuServerError: an I/O error inside the server fails the read and
// never returns data. With simple replies QEMU answers with the error
// value: a ServerError naming EIO, and the connection stays usable. With
// structured replies QEMU 7.2 drops the connection instead (its sparse
// read path treats the error as fatal): an error all the same.
func TestQemuServerError(t *testing.T) {
	img, ref := testDisk(t)
	rules := filepath.Join(t.TempDir(), "blkdebug.conf")
	conf := "[inject-error]\nevent = \"read_aio\"\nerrno = \"5\"\nonce = \"on\"\n"
	if err := os.WriteFile(rules, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	serve := func(t *testing.T) *server {
		return startQemuNBD(t, "unix", "--read-only", "--image-opts",
			"driver=qcow2,file.driver=blkdebug,file.config="+rules+",file.image.driver=file,file.image.filename="+img)
	}
	buf := make([]byte, 1<<20)
	t.Run("simple", func(t *testing.T) {
		s := serve(t)
		c := s.dial(t, &Options{NoStructuredReplies: true})
		var se *ServerError
		_, err := c.ReadAt(buf, 5<<20)
		if !errors.As(err, &se) || se.Errno != 5 || !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "EIO") {
			t.Fatalf("read through an injected EIO: %v, want a ServerError naming EIO\n%s", err, s.stderr)
		}
		compareWithFile(t, c, ref, 4<<20, 0) // the rule fired once; the connection still works
	})
	t.Run("structured", func(t *testing.T) {
		s := serve(t)
		c := s.dial(t, nil)
		if _, err := c.ReadAt(buf, 5<<20); err == nil {
			t.Fatal("read through an injected EIO succeeded")
		}
	})
}

func TestQemuAllocationMatchesMap(t *testing.T) {
	img, _ := testDisk(t)
	s := startQemuNBD(t, "unix", "-f", "qcow2", "--read-only", img)
	c := s.dial(t, &Options{MetaContexts: []string{ContextAllocation, "qemu:no-such-context"}})
	if !c.HasMetaContext(ContextAllocation) || c.HasMetaContext("qemu:no-such-context") {
		t.Fatalf("negotiated %v", c.MetaContexts())
	}
	var want []Extent
	for _, m := range qemuMap(t, img) {
		var flags uint32
		if !m.Data {
			flags |= StateHole
		}
		if m.Zero {
			flags |= StateZero
		}
		want = append(want, Extent{m.Start, m.Length, flags})
	}
	want = merge(want)
	got := collect(t, c, 0, c.Size(), ContextAllocation)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("base:allocation\n got %v\nwant %v (qemu-img map)", got, want)
	}
	// A window in the middle, unaligned, is the same map clipped.
	part := collect(t, c, 65536+7, 10<<20, ContextAllocation)
	if part[0].Offset != 65536+7 || part[len(part)-1].End() != 65536+7+10<<20 {
		t.Fatalf("window extents %v", part)
	}
	if _, err := c.BlockStatus(context.Background(), 0, 4096, "qemu:dirty-bitmap:x"); !errors.Is(err, ErrNoMetaContext) {
		t.Fatalf("block status on a context not negotiated: %v", err)
	}
}

// TestQemuAllocationDepth reads qemu:allocation-depth of a two-image
// chain: 1 where the top image has the data, 2 where the backing file
// does, 0 where neither does.
func TestQemuAllocationDepth(t *testing.T) {
	needTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	base := makeQcow2(t, dir, 8<<20, 1, region{0, 1 << 20}, region{4 << 20, 1 << 20})
	top := filepath.Join(dir, "top.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
	qemuIO(t, top, "write -P 1 512k 1M")
	s := startQemuNBD(t, "unix", "-f", "qcow2", "--read-only", "--allocation-depth", top)
	c := s.dial(t, &Options{MetaContexts: []string{ContextAllocationDepth}})
	got := collect(t, c, 0, c.Size(), ContextAllocationDepth)
	var want []Extent
	for _, m := range qemuMap(t, top) {
		var depth uint32
		if m.Present {
			depth = uint32(m.Depth) + 1
		}
		want = append(want, Extent{m.Start, m.Length, depth})
	}
	if want = merge(want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("allocation depth\n got %v\nwant %v", got, want)
	}
	if got[0].Flags != 2 || got[1].Flags != 1 {
		t.Fatalf("depths %v: want the backing file (2) then the top image (1)", got)
	}
}

// TestQemuDirtyBitmap: a persistent bitmap added before some writes lists
// exactly the 64 KiB granules those writes touched.
func TestQemuDirtyBitmap(t *testing.T) {
	needTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	img := makeQcow2(t, dir, 64<<20, 3, region{0, 8 << 20})
	sh(t, "qemu-img", "bitmap", "--add", img, "bm0")
	writes := []region{{100, 10}, {65536 * 10, 65536}, {65536*20 - 1, 2}, {40 << 20, 3 << 20}, {(64 << 20) - 512, 512}}
	var cmds []string
	for _, w := range writes {
		cmds = append(cmds, fmt.Sprintf("write -P 0x77 %d %d", w.off, w.n))
	}
	qemuIO(t, img, cmds...)
	s := startQemuNBD(t, "unix", "-f", "qcow2", "--read-only", "--bitmap=bm0", img)
	ctx := context.Background()
	_, offered, err := Query(ctx, "unix", s.addr, "disk", []string{"qemu:"}, nil)
	if err != nil || !contains(offered, DirtyBitmapContext("bm0")) {
		t.Fatalf("Query offered %v, %v", offered, err)
	}
	c := s.dial(t, &Options{MetaContexts: []string{ContextAllocation, DirtyBitmapContext("bm0")}})
	var dirty []Extent
	for _, e := range collect(t, c, 0, c.Size(), DirtyBitmapContext("bm0")) {
		if e.Flags&StateDirty != 0 {
			dirty = append(dirty, Extent{e.Offset, e.Length, e.Flags})
		}
	}
	const g = 64 << 10
	var want []Extent
	for _, w := range writes {
		start, end := w.off/g*g, (w.off+w.n+g-1)/g*g
		want = append(want, Extent{start, end - start, StateDirty})
	}
	if want = merge(want); fmt.Sprint(dirty) != fmt.Sprint(want) {
		t.Fatalf("dirty extents\n got %v\nwant %v", dirty, want)
	}
	// One-extent probes: a dirty granule, then the clean run after it.
	for _, probe := range []struct {
		off  int64
		want Extent
	}{{65536 * 10, Extent{65536 * 10, 65536, StateDirty}}, {65536 * 11, Extent{65536 * 11, 65536 * 8, 0}}} {
		e, err := c.BlockStatusOne(ctx, probe.off, 1<<20, DirtyBitmapContext("bm0"))
		if err != nil || e != probe.want {
			t.Fatalf("BlockStatusOne(%d) = %v, %v; want %v", probe.off, e, err, probe.want)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestQemuSparse8GiB reads and maps a sparse 8 GiB image: holes cost no
// wire bytes, and Extents needs several block status requests (each asks
// for at most 2 GiB).
func TestQemuSparse8GiB(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 8 GiB")
	}
	needTools(t, "qemu-img", "qemu-io")
	dir := t.TempDir()
	img := filepath.Join(dir, "big.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", img, "8G")
	qemuIO(t, img, "write -P 0xa1 0 64k", "write -P 0xb2 3G 1M", "write -P 0xc3 4294967040 512", "write -P 0xd4 8191M 1M")
	ref := toRaw(t, img, "qcow2")
	s := startQemuNBD(t, "unix", "-f", "qcow2", "--read-only", img)
	c := s.dial(t, &Options{MetaContexts: []string{ContextAllocation}, RequestSize: 32 << 20})
	if c.Size() != 8<<30 {
		t.Fatalf("size %d", c.Size())
	}
	ext := collect(t, c, 0, c.Size(), ContextAllocation)
	var data []Extent
	for _, e := range ext {
		if e.Flags&StateHole == 0 {
			data = append(data, e)
		}
	}
	// The 512 bytes written across the 4 GiB mark allocate two clusters.
	want := "[{0 65536 0} {3221225472 1048576 0} {4294901760 131072 0} {8588886016 1048576 0}]"
	if fmt.Sprint(data) != want {
		t.Fatalf("data extents %v, want %s", data, want)
	}
	var fromMap []Extent
	for _, m := range qemuMap(t, img) {
		if m.Data {
			fromMap = append(fromMap, Extent{m.Start, m.Length, 0})
		}
	}
	if fmt.Sprint(merge(fromMap)) != want {
		t.Fatalf("qemu-img map gives %v", fromMap)
	}
	compareWithFile(t, c, ref, 32<<20, 0)
}

// TestQemuConcurrentReaders: many goroutines reading random ranges on one
// connection with few slots get exactly their own bytes.
func TestQemuConcurrentReaders(t *testing.T) {
	img, ref := testDisk(t)
	want, err := os.ReadFile(ref)
	if err != nil {
		t.Fatal(err)
	}
	s := startQemuNBD(t, "tcp", "-f", "qcow2", "--read-only", img)
	c := s.dial(t, &Options{MaxInFlight: 4, RequestSize: 256 << 10})
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for range 10 {
				n := 1 + rng.IntN(3<<20)
				off := rng.Int64N(c.Size() - int64(n))
				buf := make([]byte, n)
				if _, err := c.ReadAt(buf, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf, want[off:off+int64(n)]) {
					errs <- fmt.Errorf("goroutine %d: %d bytes at %d differ from the reference", g, n, off)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// bigRawDisk is a raw image full of data, so reads take a while.
func bigRawDisk(t testing.TB, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "big.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte("cairn-nbd-"), 1<<20/10+1)[:1<<20]
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestQemuServerKilled: killing the server in the middle of a large read
// fails the read (and every later call) promptly.
func TestQemuServerKilled(t *testing.T) {
	path := bigRawDisk(t, 256<<20)
	s := startQemuNBD(t, "unix", "-f", "raw", "--read-only", path)
	c := s.dial(t, &Options{RequestSize: 1 << 20})
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 256<<20)
		for range 20 { // far more than the kill takes to arrive
			if _, err := c.ReadAt(buf, 0); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	time.Sleep(100 * time.Millisecond)
	s.cmd.Process.Kill()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("reads went on after the server was killed")
		}
		t.Logf("read failed as it should: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("read hangs after the server was killed")
	}
	if _, err := c.ReadAt(make([]byte, 10), 0); err == nil {
		t.Fatal("a read after the connection died succeeded")
	}
}

// TestQemuServerStopped: a server that stops answering (SIGSTOP) fails
// outstanding requests after Options.Timeout, and a cancelled context ends
// a read at once.
func TestQemuServerStopped(t *testing.T) {
	path := bigRawDisk(t, 64<<20)
	s := startQemuNBD(t, "unix", "-f", "raw", "--read-only", path)
	c := s.dial(t, &Options{Timeout: 2 * time.Second})
	buf := make([]byte, 64<<20)
	if _, err := c.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // idle for longer than the timeout: fine
	if _, err := c.ReadAt(buf[:4096], 0); err != nil {
		t.Fatalf("read after an idle period: %v", err)
	}
	s.cmd.Process.Signal(syscall.SIGSTOP)
	defer s.cmd.Process.Signal(syscall.SIGCONT)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	_, err := c.ReadAtContext(ctx, buf[:1<<20], 0)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(t0) > 3*time.Second {
		t.Fatalf("cancelled read: %v after %v", err, time.Since(t0))
	}
	t0 = time.Now()
	_, err = c.ReadAt(buf[:1<<20], 0)
	if err == nil || !strings.Contains(err.Error(), "sent nothing") || time.Since(t0) > 15*time.Second {
		t.Fatalf("read from a stopped server: %v after %v", err, time.Since(t0))
	}
}

func TestQemuQueryAndUnknownExport(t *testing.T) {
	img, _ := testDisk(t)
	s := startQemuNBD(t, "tcp", "-f", "qcow2", "--read-only", img)
	ctx := context.Background()
	info, contexts, err := Query(ctx, s.network, s.addr, "disk", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != 48<<20 || info.MaxBlock == 0 || !contains(contexts, ContextAllocation) {
		t.Fatalf("Query: %+v %v", info, contexts)
	}
	_, err = Dial(ctx, s.network, s.addr, "nope", nil)
	if err == nil || !strings.Contains(err.Error(), `no export named "nope"`) {
		t.Fatalf("Dial to an unknown export: %v", err)
	}
}
