package ext

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
	"github.com/cairn-backup/cairn/guest/vfs"
)

// hintRecorder is an image that records prefetch hints.
type hintRecorder struct {
	*os.File
	mu    sync.Mutex
	hints [][2]int64
}

func (h *hintRecorder) Prefetch(off, n int64) {
	h.mu.Lock()
	h.hints = append(h.hints, [2]int64{off, n})
	h.mu.Unlock()
}

// TestReadDirHintsInodeTables: listing a directory hints the reader at the
// inode table blocks of its entries (spread over several block groups
// here), so that the stats that follow do not each wait for a read.
func TestReadDirHintsInodeTables(t *testing.T) {
	src := t.TempDir()
	for i := range 300 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(t.TempDir(), "many.img")
	// 1 KiB blocks and few inodes per group: the 300 inodes span groups.
	fstest.Run(t, "mkfs.ext4", "-q", "-F", "-b", "1024", "-N", "2048", "-d", src, img, "64M")
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	rec := &hintRecorder{File: f}
	fsys, err := Open(rec, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	x := fsys.(*FS)
	entries, err := x.ReadDir(x.Root())
	if err != nil {
		t.Fatal(err)
	}
	hinted := func(off int64) bool {
		for _, h := range rec.hints {
			if off >= h[0] && off < h[0]+h[1] {
				return true
			}
		}
		return false
	}
	groups := map[uint64]bool{}
	for _, e := range entries {
		g := (e.Ino - 1) / uint64(x.sb.inodesPerGroup)
		groups[g] = true
		gd, err := x.group(g)
		if err != nil {
			t.Fatal(err)
		}
		blk := gd.inodeTable + ((e.Ino-1)%uint64(x.sb.inodesPerGroup))*uint64(x.sb.inodeSize)/x.sb.blockSize
		if _, cached := x.dev.cache.get(blk); !cached && !hinted(int64(blk*x.sb.blockSize)) {
			t.Errorf("entry %s (inode %d): its inode table block %d was not hinted", e.Name, e.Ino, blk)
		}
	}
	if len(groups) < 2 || len(rec.hints) == 0 {
		t.Errorf("want entries in several groups and some hints: %d groups, %d hints", len(groups), len(rec.hints))
	}
	// The hints are merged runs, not one per inode.
	if len(rec.hints) > len(entries)/4 {
		t.Errorf("%d hints for %d entries: contiguous blocks should be hinted together", len(rec.hints), len(entries))
	}
	var _ vfs.Prefetcher = rec
}
