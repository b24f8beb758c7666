package repo

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDropCached: after the blocks of a disk are read, DropCached of all
// of them takes pages of their packs out of the page cache (counted with
// mincore). Not all: the kernel keeps a large folio that reaches past the
// range, and these packs are small.
func TestDropCached(t *testing.T) {
	r, p, _ := recycleImage(t)
	dr, err := r.OpenDisk(p, "vda", 0)
	if err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(r.Dir(), "packs", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no pack files")
	}
	n := dr.Disk().Blocks()
	resident := func() (pages int) {
		for _, path := range packs {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := f.Stat()
			m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			vec := make([]byte, (st.Size()+pageSize-1)/pageSize)
			if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
				t.Fatal(e)
			}
			unix.Munmap(m)
			for _, v := range vec {
				pages += int(v & 1)
			}
		}
		return pages
	}
	for b := int64(0); b < n; b++ {
		if _, err := dr.ReadBlock(b); err != nil {
			t.Fatal(err)
		}
	}
	before := resident()
	dr.DropCached(0, n)
	after := resident()
	if before < 8 || after >= before {
		t.Errorf("pack pages cached: %d after reading every block, %d after DropCached; want fewer after", before, after)
	}
}
