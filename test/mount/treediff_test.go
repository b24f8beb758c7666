package mount

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// fileMeta is what treeDiff compares for one path.
type fileMeta struct {
	mode       uint32
	uid, gid   uint32
	size       int64
	mtime      [2]int64
	nlink      uint64
	target     string
	sum        string
	linkGroup  string // the first path (sorted) with the same inode, for hard links
	rdev       uint64
	sparseHint bool // fewer blocks than the size needs
}

type metaOpts struct {
	owners, times, nlink bool
}

// scanTree describes every path below root (relative), reading every
// regular file's content.
func scanTree(t *testing.T, root string) map[string]fileMeta {
	t.Helper()
	out := map[string]fileMeta{}
	byIno := map[uint64]string{}
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			t.Fatalf("lstat %s: %v", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		m := fileMeta{mode: st.Mode, uid: st.Uid, gid: st.Gid, size: st.Size, mtime: [2]int64{st.Mtim.Sec, st.Mtim.Nsec},
			nlink: uint64(st.Nlink), rdev: uint64(st.Rdev)}
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			m.target, _ = os.Readlink(p)
		case syscall.S_IFREG:
			m.sum = sha256File(t, p)
			m.sparseHint = st.Blocks*512 < st.Size
			if st.Nlink > 1 {
				if first, ok := byIno[st.Ino]; ok {
					m.linkGroup = first
				} else {
					byIno[st.Ino] = rel
					m.linkGroup = rel
				}
			}
		case syscall.S_IFDIR:
			m.size = 0 // directory sizes differ between file systems and copies
		}
		out[rel] = m
	}
	return out
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// treeDiff compares two trees (want: the reference, e.g. a kernel mount;
// got: what cairn produced) and fails the test on any difference in
// names, types, modes, sizes, content, symlink targets, hard links and,
// as asked, owners, modification times and link counts.
func treeDiff(t *testing.T, want, got string, o metaOpts) {
	t.Helper()
	w, g := scanTree(t, want), scanTree(t, got)
	var diffs []string
	for p, wm := range w {
		gm, ok := g[p]
		if !ok {
			diffs = append(diffs, "missing: "+p)
			continue
		}
		if p == "." {
			wm.mode, gm.mode = wm.mode&syscall.S_IFMT, gm.mode&syscall.S_IFMT // the copy's top directory
			wm.mtime, gm.mtime = [2]int64{}, [2]int64{}
		}
		if !o.owners {
			wm.uid, wm.gid, gm.uid, gm.gid = 0, 0, 0, 0
		}
		if !o.times {
			wm.mtime, gm.mtime = [2]int64{}, [2]int64{}
		}
		if !o.nlink || wm.mode&syscall.S_IFMT == syscall.S_IFDIR {
			wm.nlink, gm.nlink = 0, 0
		}
		if wm.mode&syscall.S_IFMT == syscall.S_IFLNK {
			wm.mtime, gm.mtime = [2]int64{}, [2]int64{} // cp -a sets it; ext4 fast symlinks vs copies vary in nsec
		}
		// Holes: a reference file with holes must stay sparse.
		sparseLost := wm.sparseHint && !gm.sparseHint && wm.size > 1<<20
		wm.sparseHint, gm.sparseHint = false, false
		if wm != gm || sparseLost {
			diffs = append(diffs, fmt.Sprintf("%s: want %+v, got %+v (sparse lost %v)", p, wm, gm, sparseLost))
		}
	}
	for p := range g {
		if _, ok := w[p]; !ok {
			diffs = append(diffs, "extra: "+p)
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 30 {
			diffs = append(diffs[:30], fmt.Sprintf("... and %d more", len(diffs)-30))
		}
		t.Fatalf("%s differs from %s (%d paths compared):\n%s", got, want, len(w), strings.Join(diffs, "\n"))
	}
	t.Logf("%s matches %s: %d paths", got, want, len(w))
}

// checkManifest checks every file of a sha256sum manifest below prefix
// (a path relative to the manifest's root, "" for all) against root.
func checkManifest(t *testing.T, manifest, prefix, root string) int {
	t.Helper()
	f, err := os.Open(manifest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		sum, p, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("manifest line %q", sc.Text())
		}
		if prefix != "" && !strings.HasPrefix(p, prefix+"/") {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, prefix), "/")
		if got := sha256File(t, filepath.Join(root, rel)); got != sum {
			t.Fatalf("%s: sha256 %s, manifest says %s", filepath.Join(root, rel), got, sum)
		}
		n++
	}
	if n == 0 {
		t.Fatalf("no file of %s below %q", manifest, prefix)
	}
	return n
}
