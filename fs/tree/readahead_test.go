package tree

import (
	"bytes"
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
	if limit := off/bs + (2*read+minWindow)/bs; lastStream(small).hwm > limit {
		t.Errorf("%d reads of 4 KiB, %d KiB apart, queued blocks up to %d, want at most %d (twice what was read past the last read, plus the first window)",
			reads, hop>>10, lastStream(small).hwm, limit)
	}

	big := tr.newHandle(p, d, 0, d.Size)
	buf = make([]byte, 1<<20)
	for off := int64(0); off < 40<<20; off += 1 << 20 {
		if _, err := big.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	if want := big.maxWindow(sourceOf(big, t)); lastStream(big).window != want {
		t.Errorf("after 40 MiB of 1 MiB reads the window is %d blocks, want the maximum %d", lastStream(big).window, want)
	}
}

// lastStream is the stream of the handle's last read.
func lastStream(h *diskHandle) *stream {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := &h.streams[0]
	for i := range h.streams {
		if h.streams[i].used > st.used {
			st = &h.streams[i]
		}
	}
	return st
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

// TestStreamsOfOneHandle: the mount shares one handle among all readers of
// a file. Two readers streaming different halves of it, their reads
// interleaved, each keep their own readahead (the window reaches its
// maximum) and drop-behind (each hands back its own half in order, without
// gaps); random reads in between do not reset them.
func TestStreamsOfOneHandle(t *testing.T) {
	f := newFixture(t)
	const half = 128 << 20
	path := filepath.Join(f.dir, "two.raw")
	img := make([]byte, 2*half)
	for i := range img {
		img[i] = byte(i*7 + i>>11 + i>>17)
	}
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	p := f.backup(t, "vm", [2]string{"vda", path})
	tr := f.tree(Options{CacheBytes: 256 << 20})
	d := &p.Disks[0]
	h := tr.newHandle(p, d, 0, d.Size)
	src := sourceOf(h, t)

	dropped := [2]int64{0, half} // reader i's ranges so far cover [start, dropped[i])
	var windows [2]int64
	for k := int64(0); k < half; k += 1 << 20 {
		for i := range 2 {
			off := int64(i)*half + k
			s, err := h.ReadSlices(off, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Join(s.Vec, nil); !bytes.Equal(got, img[off:off+1<<20]) {
				t.Fatalf("reader %d at %d MiB: wrong bytes", i, off>>20)
			}
			windows[i] = lastStream(h).window
			if s.DropLen > 0 {
				if s.DropOff != dropped[i] {
					t.Fatalf("reader %d at %d MiB: drop from %d MiB, want %d MiB (its own ranges, in order, no gaps)",
						i, off>>20, s.DropOff>>20, dropped[i]>>20)
				}
				dropped[i] += s.DropLen
			}
			s.Release()
		}
		// A random 4 KiB read now and then, far from both.
		if k%(8<<20) == 0 {
			if _, err := h.ReadAt(make([]byte, 4096), (k*7919)%(2*half)&^4095); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 2 {
		if want := h.maxWindow(src); windows[i] != want {
			t.Errorf("reader %d: window %d blocks after its half, want the maximum %d", i, windows[i], want)
		}
		if left := int64(i)*half + half - dropped[i]; left > dropLag+dropStep {
			t.Errorf("reader %d: %d MiB of its half not handed back to drop, want at most %d", i, left>>20, (dropLag+dropStep)>>20)
		}
	}
}
