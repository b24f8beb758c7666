package xfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// buildSource writes the variety of files every variant is populated from.
func buildSource(t testing.TB, root string) {
	t.Helper()
	rng := rand.New(rand.NewSource(1))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string, data []byte, mode os.FileMode) {
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, mode))
		must(os.Chmod(p, mode))
	}
	random := func(n int) []byte { b := make([]byte, n); rng.Read(b); return b }
	at := func(p string, offs []int64, chunk int, size int64) {
		fh, err := os.Create(p)
		must(err)
		for _, o := range offs {
			_, err := fh.WriteAt(random(chunk), o)
			must(err)
		}
		must(fh.Truncate(size))
		must(fh.Close())
	}
	write(filepath.Join(root, "empty"), nil, 0o644)
	write(filepath.Join(root, "small.txt"), []byte("hello, xfs\n"), 0o640)
	write(filepath.Join(root, "random-3M"), random(3<<20+123), 0o600)
	write(filepath.Join(root, "setuid"), []byte("#!/bin/sh\n"), 0o4755)
	write(filepath.Join(root, "nothing"), []byte("x"), 0)
	at(filepath.Join(root, "sparse-holes"), []int64{0, 1 << 20, 5<<20 + 17, 9 << 20}, 8192, 12<<20)
	at(filepath.Join(root, "sparse-1.5G"), []int64{4096, 700 << 20, 3<<29 - 4096}, 4096, 3<<29)
	at(filepath.Join(root, "sparse-leading-hole"), []int64{2 << 20}, 100, 3<<20)
	var offs []int64
	for o := int64(0); o < 12<<20; o += 8192 {
		offs = append(offs, o)
	}
	at(filepath.Join(root, "fragmented-sparse"), offs, 4096, 12<<20)
	for _, n := range []int{10, 200, 5000, 50000} {
		d := filepath.Join(root, fmt.Sprintf("dir%d", n))
		must(os.MkdirAll(d, 0o755))
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("e%d", i)
			if n > 10 {
				name = fmt.Sprintf("entry-%06d-%s", i, strings.Repeat("n", i%40))
			}
			must(os.WriteFile(filepath.Join(d, name), []byte(name), 0o644))
		}
	}
	write(filepath.Join(root, "names", strings.Repeat("L", 255)), []byte("long"), 0o644)
	write(filepath.Join(root, "names", "Grüße-日本語-😀"), []byte("utf8"), 0o644)
	write(filepath.Join(root, "names", "with space & 'quote'"), []byte("q"), 0o644)
	must(os.MkdirAll(filepath.Join(root, "emptydir"), 0o700))
	must(os.MkdirAll(filepath.Join(root, "sticky"), 0o755))
	must(os.Chmod(filepath.Join(root, "sticky"), 0o1777|os.ModeSticky))
	must(os.Symlink("small.txt", filepath.Join(root, "fast-link")))
	long := strings.Repeat("remote/", 150) + "end" // 1053 bytes
	must(os.Symlink(long[:1000], filepath.Join(root, "remote-link-1000")))
	must(os.Symlink(long[:1023], filepath.Join(root, "remote-link-1023")))
	must(os.Symlink("/nonexistent/dangling", filepath.Join(root, "dangling")))
	write(filepath.Join(root, "links", "a"), []byte("linked"), 0o644)
	must(os.Link(filepath.Join(root, "links", "a"), filepath.Join(root, "links", "b")))
	must(os.Link(filepath.Join(root, "links", "a"), filepath.Join(root, "dir200", "c")))
	must(unix.Mkfifo(filepath.Join(root, "fifo"), 0o620))
	must(unix.Mknod(filepath.Join(root, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(unix.Mknod(filepath.Join(root, "loopdev"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 1000))))
	must(unix.Mknod(filepath.Join(root, "bigdev"), unix.S_IFCHR|0o600, int(unix.Mkdev(259, 200000))))
	must(os.Lchown(filepath.Join(root, "small.txt"), 1234, 5678))
	must(os.Lchown(filepath.Join(root, "fast-link"), 4242, 4343))
	must(os.Lchown(filepath.Join(root, "dir200"), 100000, 100001))
	times := map[string]time.Time{
		"small.txt":    time.Unix(1_000_000_000, 123456789),
		"random-3M":    time.Unix(1_700_000_000, 1),
		"empty":        time.Unix(-100_000, 500),
		"dir10":        time.Unix(1_234_567_890, 999_999_999),
		"sparse-holes": time.Unix(2_000_000_000, 42),
	}
	for p, tm := range times {
		must(os.Chtimes(filepath.Join(root, p), tm, tm))
	}
	must(unix.Lutimes(filepath.Join(root, "fast-link"), []unix.Timeval{{Sec: 1e9, Usec: 5}, {Sec: 1e9, Usec: 7}}))
}

// node is what the kernel reports for one path of a mounted image.
type node struct {
	st     unix.Stat_t
	btime  time.Time
	sha    string
	target string
	names  []string // directory entries, sorted as ReadDir order is not
}

// walkKernel records stat, statx btime, content hash and link target of
// every path under root, as seen through a kernel mount.
func walkKernel(t testing.TB, root string) map[string]*node {
	t.Helper()
	out := map[string]*node{}
	err := filepath.Walk(root, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		n := &node{}
		if err := unix.Lstat(p, &n.st); err != nil {
			return err
		}
		var sx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BTIME, &sx); err == nil && sx.Mask&unix.STATX_BTIME != 0 {
			n.btime = time.Unix(sx.Btime.Sec, int64(sx.Btime.Nsec))
		}
		switch n.st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			fh, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, fh)
			fh.Close()
			if err != nil {
				return err
			}
			n.sha = hex.EncodeToString(h.Sum(nil))
		case unix.S_IFLNK:
			n.target, err = os.Readlink(p)
			if err != nil {
				return err
			}
		case unix.S_IFDIR:
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			for _, e := range ents {
				n.names = append(n.names, e.Name())
			}
		}
		out[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
