package fat

import (
	"testing"
	"time"
)

func raw83(name string, nt byte) []byte {
	b := make([]byte, 32)
	copy(b, name)
	b[12] = nt
	return b
}

func TestShortName(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		nt   byte
		want string
	}{
		{"README  TXT", 0, "README.TXT"},
		{"README  TXT", ntLowerBase, "readme.TXT"},
		{"README  TXT", ntLowerExt, "README.txt"},
		{"README  TXT", ntLowerBase | ntLowerExt, "readme.txt"},
		{"NOEXT      ", 0, "NOEXT"},
		{"\x05BC     TXT", 0, "σBC.TXT"}, // 0x05 stands for 0xE5, σ in code page 437
		{"\x81BER    TXT", 0, "üBER.TXT"},
	} {
		if got := shortName(raw83(tc.raw, tc.nt)); got != tc.want {
			t.Errorf("shortName(%q, %#x) = %q, want %q", tc.raw, tc.nt, got, tc.want)
		}
	}
}

func TestLFNChecksum(t *testing.T) {
	// Known value: the checksum of "FOO     BAR" as Windows computes it.
	var s byte
	for _, c := range []byte("FOO     BAR") {
		s = (s>>1 | s<<7) + c
	}
	if got := lfnChecksum([]byte("FOO     BAR")); got != s {
		t.Fatalf("checksum %#x, want %#x", got, s)
	}
}

func TestLFNOrder(t *testing.T) {
	short := raw83("LONGNA~1TXT", 0)
	sum := lfnChecksum(short)
	slot := func(ord byte, chars string) []byte {
		b := make([]byte, 32)
		b[0], b[11], b[13] = ord, attrLFN, sum
		u := []uint16{}
		for _, r := range chars {
			u = append(u, uint16(r))
		}
		if len(u) < 13 {
			u = append(u, 0)
		}
		for len(u) < 13 {
			u = append(u, 0xFFFF)
		}
		pos := []int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}
		for i, p := range pos {
			b[p], b[p+1] = byte(u[i]), byte(u[i]>>8)
		}
		return b
	}
	var l lfnState
	l.add(slot(0x42, "ame.txt"))
	l.add(slot(0x01, "a long file n"))
	if got := l.name(short); got != "a long file name.txt" {
		t.Fatalf("name %q", got)
	}
	l.reset()
	l.add(slot(0x01, "a long file n")) // no 0x40 slot first
	if got := l.name(short); got != "" {
		t.Fatalf("inconsistent set gave %q", got)
	}
	l.reset()
	l.add(slot(0x42, "ame.txt"))
	l.add(slot(0x02, "a long file n")) // order 2 twice
	if got := l.name(short); got != "" {
		t.Fatalf("out-of-order set gave %q", got)
	}
}

func TestFATTime(t *testing.T) {
	// 2021-03-04 05:06:08.37: date (41<<9 | 3<<5 | 4), time (5<<11 | 6<<5 | 4), 137 hundredths.
	got := fatTime(41<<9|3<<5|4, 5<<11|6<<5|4, 137)
	want := time.Date(2021, 3, 4, 5, 6, 9, 370_000_000, time.UTC)
	if !got.Equal(want) {
		t.Fatalf("fatTime = %v, want %v", got, want)
	}
	if !fatTime(0, 0, 0).IsZero() {
		t.Fatal("zero date is not the zero time")
	}
}
