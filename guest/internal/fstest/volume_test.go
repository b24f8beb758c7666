package fstest

import (
	"bytes"
	"io"
	"testing"
)

// TestSectorsRoundTrip: an image encoded and decoded reads back byte for
// byte, zero sectors left out of the encoding; later records win.
func TestSectorsRoundTrip(t *testing.T) {
	img := make([]byte, 10*SectorSize+100)
	copy(img[3*SectorSize+7:], "three")
	copy(img[10*SectorSize+99:], "!")
	enc := EncodeSectors(img)
	if len(enc) != 2*recordSize {
		t.Fatalf("%d bytes encoded, want two records", len(enc))
	}
	v := DecodeSectors(enc, 1<<20)
	if v.Size != 11*SectorSize {
		t.Fatalf("Size %d", v.Size)
	}
	got := make([]byte, v.Size)
	if n, err := v.ReadAt(got, 0); n != len(got) || err != nil {
		t.Fatalf("ReadAt: %d, %v", n, err)
	}
	if !bytes.Equal(got[:len(img)], img) || !bytes.Equal(got[len(img):], make([]byte, len(got)-len(img))) {
		t.Fatal("decoded image differs")
	}
	if w := NewVolume(img); w.Size != int64(len(img)) || len(w.sectors) != 2 {
		t.Fatalf("NewVolume: size %d, %d sectors", w.Size, len(w.sectors))
	}
	// A later record for sector 3 wins; a sector past the limit is dropped.
	enc = append(enc, EncodeSectors(append(make([]byte, 3*SectorSize), "later"...))...)
	if v := DecodeSectors(enc, 4*SectorSize); v.Size != 4*SectorSize || string(v.sectors[3][:5]) != "later" || v.sectors[10] != nil {
		t.Fatalf("limit or later record: size %d", v.Size)
	}
}

func TestVolumeReadAtEnd(t *testing.T) {
	v := NewVolume([]byte("abc"))
	v.Size = 10
	b := make([]byte, 8)
	if n, err := v.ReadAt(b, 4); n != 6 || err != io.EOF || !bytes.Equal(b[:6], make([]byte, 6)) {
		t.Errorf("ReadAt across Size: %d, %v, %q", n, err, b)
	}
	if n, err := v.ReadAt(b[:3], 0); n != 3 || err != nil || string(b[:3]) != "abc" {
		t.Errorf("ReadAt 0: %d, %v, %q", n, err, b[:3])
	}
	if n, err := v.ReadAt(b, 10); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at Size: %d, %v", n, err)
	}
	if n, err := v.ReadAt(b, -1); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at -1: %d, %v", n, err)
	}
}

// TestLayout: a volume grows to the size its header gives, capped at Max,
// and never shrinks below what it holds.
func TestLayout(t *testing.T) {
	l := Layout{Max: 4 * SectorSize, Size: func(h []byte) int64 { return int64(h[0]) * SectorSize }}
	for _, tc := range []struct {
		head byte
		want int64
	}{{0, SectorSize + 1}, {3, 3 * SectorSize}, {9, 4 * SectorSize}} {
		img := make([]byte, SectorSize+1)
		img[0] = tc.head
		if v := l.Image(img); v.Size != tc.want {
			t.Errorf("header %d: Image size %d, want %d", tc.head, v.Size, tc.want)
		}
	}
	in := EncodeSectors([]byte{9})
	if v := l.Input(in); v.Size != 4*SectorSize {
		t.Errorf("Input size %d", v.Size)
	}
}
