package fat

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// requireFATTools ends the test unless mkfs.vfat and mtools are here
// (a skip, or a failure when CI=true or CAIRN_REQUIRE_TOOLS=1).
func requireFATTools(tb testing.TB) {
	tb.Helper()
	fstest.RequireTools(tb, "dosfstools mtools", "mkfs.vfat", "mcopy", "mattrib", "mmd", "mdel")
}

// srcEntry is what the source tree says about one path.
type srcEntry struct {
	dir    bool
	size   int64
	sum    string
	mtime  time.Time
	ro     bool
	nlinks uint32 // directories: 2 + subdirectories
}

// writeFile writes data to p, making its parent directories, and sets
// its modification time.
func writeFile(t testing.TB, p string, data []byte, mtime time.Time) {
	t.Helper()
	fstest.WriteFile(t, p, data)
	fstest.Must(t, os.Chtimes(p, mtime, mtime))
}

// scanSource describes the tree under root, keyed by slash path.
func scanSource(t testing.TB, root string) map[string]*srcEntry {
	t.Helper()
	m := map[string]*srcEntry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		e := &srcEntry{dir: d.IsDir(), mtime: fi.ModTime(), ro: fi.Mode().Perm()&0o200 == 0}
		if d.IsDir() {
			e.nlinks = 2
			if rel != "." {
				m[path.Dir(rel)].nlinks++
			}
		} else {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.size, e.sum = int64(len(b)), fstest.SHA(b)
		}
		m[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// walked is what the reader says about one path.
type walked struct {
	fi  vfs.FileInfo
	sum string
}

// walkFS reads every directory and file of fsys, checking that Stat,
// Lookup and ReadDir agree, and returns them keyed by slash path.
func walkFS(t testing.TB, fsys vfs.FS) map[string]walked {
	t.Helper()
	out := map[string]walked{}
	var walk func(ino uint64, p string, depth int)
	walk = func(ino uint64, p string, depth int) {
		if depth > 64 {
			t.Fatalf("%s: too deep", p)
		}
		fi, err := fsys.Stat(ino)
		if err != nil {
			t.Fatalf("Stat(%s): %v", p, err)
		}
		w := walked{fi: fi}
		if fi.IsDir() {
			ents, err := fsys.ReadDir(ino)
			if err != nil {
				t.Fatalf("ReadDir(%s): %v", p, err)
			}
			for _, e := range ents {
				cp := path.Join(p, e.Name)
				if _, dup := out[cp]; dup {
					t.Fatalf("%s listed twice", cp)
				}
				got, err := fsys.Lookup(ino, e.Name)
				if err != nil || got != e {
					t.Fatalf("Lookup(%s) = %+v, %v; ReadDir said %+v", cp, got, err, e)
				}
				walk(e.Ino, cp, depth+1)
				if out[cp].fi.Mode&vfs.ModeType != e.Type {
					t.Fatalf("%s: DirEntry type %o, Stat mode %o", cp, e.Type, out[cp].fi.Mode)
				}
			}
		} else {
			f, err := fsys.Open(ino)
			if err != nil {
				t.Fatalf("Open(%s): %v", p, err)
			}
			if f.Size() != fi.Size {
				t.Fatalf("%s: File.Size %d, Stat size %d", p, f.Size(), fi.Size)
			}
			b := make([]byte, fi.Size)
			if n, err := f.ReadAt(b, 0); n != len(b) || (err != nil && n < len(b)) {
				t.Fatalf("ReadAt(%s): %d, %v", p, n, err)
			}
			// Unaligned reads agree with the whole read.
			if len(b) > 3 {
				part := make([]byte, len(b)/2)
				off := int64(len(b) / 3)
				n, err := f.ReadAt(part, off)
				if n != len(part) || (err != nil && int64(n)+off < fi.Size) || !bytes.Equal(part, b[off:off+int64(n)]) {
					t.Fatalf("%s: partial ReadAt at %d: %d, %v, mismatch", p, off, n, err)
				}
			}
			if n, err := f.ReadAt(make([]byte, 1), fi.Size); n != 0 || err == nil {
				t.Fatalf("%s: ReadAt at size: %d, %v, want io.EOF", p, n, err)
			}
			w.sum = fstest.SHA(b)
		}
		out[p] = w
	}
	walk(fsys.Root(), ".", 0)
	return out
}

func describe(m map[string]walked) string {
	s := ""
	for k := range m {
		s += fmt.Sprintf("  %q\n", k)
	}
	return s
}
