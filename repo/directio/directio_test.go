package directio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestBufferIsAligned(t *testing.T) {
	for _, n := range []int{Align, 3 * Align, 1 << 20} {
		b := Buffer(n)
		if len(b) != n || cap(b) != n || !Aligned(b) {
			t.Errorf("Buffer(%d): len %d cap %d aligned %v", n, len(b), cap(b), Aligned(b))
		}
		if Aligned(b[1:]) {
			t.Errorf("Aligned reports an odd address as aligned")
		}
	}
}

// TestDirectWrite writes through OpenWriter and reads the bytes back, and
// checks that a misaligned write is an error Unsupported recognises.
func TestDirectWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f := OpenWriter(path)
	if f == nil {
		t.Fatalf("%s: O_DIRECT refused; set TMPDIR to a file system with direct I/O (ext4, XFS, btrfs, tmpfs)", path)
	}
	defer f.Close()
	b := Buffer(2 * Align)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if _, err := f.WriteAt(b, Align); err != nil {
		t.Fatal(err)
	}
	_, err := f.WriteAt(b[1:Align+1], 0) // misaligned buffer: refused
	if err != nil && !Unsupported(err) {
		t.Errorf("a misaligned direct write failed with %v, which Unsupported does not recognise", err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3*Align || !bytes.Equal(got[Align:], b) {
		t.Errorf("read back %d bytes, want the %d written at %d", len(got), len(b), Align)
	}
}
