package fat

import "testing"

func TestCP437Table(t *testing.T) {
	if len(cp437High) != 128 {
		t.Fatalf("cp437 table has %d runes, want 128", len(cp437High))
	}
	for b, want := range map[byte]string{0x80: "Ç", 0x81: "ü", 0x8E: "Ä", 0x99: "Ö", 0x9A: "Ü", 0xE1: "ß", 0xA4: "ñ", 0xE5: "σ", 0xFF: "\u00a0"} {
		if got := decodeOEM([]byte{b}); got != want {
			t.Errorf("decodeOEM(0x%02x) = %q, want %q", b, got, want)
		}
	}
}
