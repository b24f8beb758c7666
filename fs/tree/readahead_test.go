package tree

import (
	"testing"
)

// TestReadaheadFollowsTheReader: a run of small reads moving forward (a
// guest file system reading the inodes of a directory's files, a few KiB
// from each inode table) queues at most about twice what it read ahead of
// itself; a run of 1 MiB reads (dd, cp) opens the window to its maximum.
func TestReadaheadFollowsTheReader(t *testing.T) {
	f := newFixture(t)
	img := gptImage(t, f.dir)
	p := f.backup(t, "vm", [2]string{"vda", img.Path})
	tr := f.tree(Options{CacheBytes: 256 << 20})
	d := &p.Disks[0]
	bs := int64(d.BlockSize)

	small := tr.newHandle(p, d, 0, d.Size)
	buf := make([]byte, 4096)
	const reads, hop = 80, 600 << 10 // 320 KiB read over 47 MiB
	var off int64
	for range reads {
		if _, err := small.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		off += hop
	}
	read := int64(reads) * int64(len(buf))
	if limit := off/bs + (2*read+minWindow)/bs; small.hwm > limit {
		t.Errorf("%d reads of 4 KiB, %d KiB apart, queued blocks up to %d, want at most %d (twice what was read past the last read, plus the first window)",
			reads, hop>>10, small.hwm, limit)
	}

	big := tr.newHandle(p, d, 0, d.Size)
	buf = make([]byte, 1<<20)
	for off := int64(0); off < 40<<20; off += 1 << 20 {
		if _, err := big.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if want := big.maxWindow(sourceOf(big, t)); big.window != want {
		t.Errorf("after 40 MiB of 1 MiB reads the window is %d blocks, want the maximum %d", big.window, want)
	}
}

func sourceOf(h *diskHandle, t *testing.T) *source {
	s, err := h.t.disks.get(h.p, h.d)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
