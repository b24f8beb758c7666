package tree

import (
	"os"
	"path/filepath"
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

// TestDropBehind: a long run of 1 MiB reads hands back, in order and
// without gaps, the ranges it has left more than dropLag behind; a reader
// jumping around (random reads) hands back none.
func TestDropBehind(t *testing.T) {
	f := newFixture(t)
	const size = 160 << 20
	path := filepath.Join(f.dir, "big.raw")
	img := make([]byte, 0, 8<<20)
	for i := 0; i < 8<<20; i++ {
		img = append(img, byte(i*7+i>>11))
	}
	if err := os.WriteFile(path, img, 0o600); err != nil { // data first, the rest a hole
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	p := f.backup(t, "vm", [2]string{"vda", path})
	tr := f.tree(Options{CacheBytes: 256 << 20})
	d := &p.Disks[0]

	seq := tr.newHandle(p, d, 0, d.Size)
	var dropped int64 // the ranges so far cover [0, dropped)
	for off := int64(0); off < size; off += 1 << 20 {
		s, err := seq.ReadSlices(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if s.DropLen > 0 {
			if s.DropOff != dropped {
				t.Fatalf("read at %d MiB: drop from %d, want %d (ranges in order, no gaps)", off>>20, s.DropOff, dropped)
			}
			if end := s.DropOff + s.DropLen; end > off+(1<<20)-dropLag {
				t.Fatalf("read at %d MiB: drops up to %d MiB, less than %d MiB behind", off>>20, end>>20, dropLag>>20)
			}
			dropped += s.DropLen
		}
		s.Release()
	}
	if want := int64(size - dropLag - dropStep); dropped < want {
		t.Errorf("160 MiB read in order: %d MiB left to drop, want at least %d", dropped>>20, want>>20)
	}

	rnd := tr.newHandle(p, d, 0, d.Size)
	for i := int64(0); i < 160; i++ {
		off := (i * 37 % 160) << 20
		s, err := rnd.ReadSlices(off, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if s.DropLen > 0 {
			t.Fatalf("random read %d at %d MiB: asked to drop %d+%d", i, off>>20, s.DropOff, s.DropLen)
		}
		s.Release()
	}
}
