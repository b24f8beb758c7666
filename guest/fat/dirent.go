package fat

import (
	"encoding/binary"
	"strings"
	"time"
	"unicode/utf16"
)

// Directory entry layout.
const (
	direntSize = 32

	attrReadOnly = 0x01
	attrHidden   = 0x02
	attrSystem   = 0x04
	attrVolume   = 0x08
	attrDir      = 0x10
	attrArchive  = 0x20
	attrLFN      = 0x0F

	ntLowerBase = 0x08
	ntLowerExt  = 0x10

	maxDirEntries = 65536 // the specification's limit per directory
)

// dirent is one parsed 8.3 entry with the name it is shown under.
type dirent struct {
	name    string // long name if valid, else the short one
	short   string
	pos     int64 // byte offset of the 8.3 entry on the volume: the inode
	attr    byte
	cluster uint32
	size    uint32
	raw     [direntSize]byte
}

func (d *dirent) isDir() bool { return d.attr&attrDir != 0 }

// parseRaw fills the fields that come from the 32 bytes alone.
func parseRaw(b []byte, pos int64, fat32 bool) dirent {
	var d dirent
	copy(d.raw[:], b)
	d.pos = pos
	d.attr = b[11]
	d.cluster = uint32(binary.LittleEndian.Uint16(b[26:]))
	if fat32 {
		d.cluster |= uint32(binary.LittleEndian.Uint16(b[20:])) << 16
		d.cluster &= 0x0FFFFFFF
	}
	d.size = binary.LittleEndian.Uint32(b[28:])
	d.short = shortName(b)
	return d
}

// shortName decodes the 8.3 name with the NT case flags and the 0x05 escape.
func shortName(b []byte) string {
	var base [8]byte
	copy(base[:], b[:8])
	if base[0] == 0x05 {
		base[0] = 0xE5
	}
	bs := strings.TrimRight(decodeOEM(base[:]), " ")
	ext := strings.TrimRight(decodeOEM(b[8:11]), " ")
	if b[12]&ntLowerBase != 0 {
		bs = asciiLower(bs)
	}
	if b[12]&ntLowerExt != 0 {
		ext = asciiLower(ext)
	}
	if ext == "" {
		return bs
	}
	return bs + "." + ext
}

func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// lfnChecksum is the checksum of the 11-byte 8.3 name stored in each LFN slot.
func lfnChecksum(name []byte) byte {
	var s byte
	for _, c := range name[:11] {
		s = (s>>1 | s<<7) + c
	}
	return s
}

// lfnState gathers LFN slots preceding an 8.3 entry.
type lfnState struct {
	units    [20 * 13]uint16
	expect   int // next order number expected, 0 when idle
	count    int
	checksum byte
	broken   bool
}

func (l *lfnState) reset() { l.expect, l.count, l.broken = 0, 0, false }

// add takes one LFN slot.
func (l *lfnState) add(b []byte) {
	ord := int(b[0])
	if ord&0x40 != 0 {
		ord &^= 0x40
		l.reset()
		if ord < 1 || ord > 20 {
			l.broken = true
			return
		}
		l.count = ord
		l.expect = ord
		l.checksum = b[13]
		for i := range l.units[:ord*13] {
			l.units[i] = 0xFFFF
		}
	}
	if l.broken || l.expect == 0 || ord != l.expect || b[13] != l.checksum || b[12] != 0 {
		l.broken = true
		return
	}
	u := l.units[(ord-1)*13:]
	for i := 0; i < 5; i++ {
		u[i] = binary.LittleEndian.Uint16(b[1+2*i:])
	}
	for i := 0; i < 6; i++ {
		u[5+i] = binary.LittleEndian.Uint16(b[14+2*i:])
	}
	for i := 0; i < 2; i++ {
		u[11+i] = binary.LittleEndian.Uint16(b[28+2*i:])
	}
	l.expect--
}

// name returns the long name for the 8.3 entry b, or "" when the slots
// gathered do not form a consistent set for it.
func (l *lfnState) name(b []byte) string {
	if l.broken || l.count == 0 || l.expect != 0 || l.checksum != lfnChecksum(b) {
		return ""
	}
	u := l.units[:l.count*13]
	n := len(u)
	for i, c := range u {
		if c == 0 {
			n = i
			break
		}
	}
	if n == 0 {
		return ""
	}
	for _, c := range u[n:] {
		if c != 0 && c != 0xFFFF {
			return "" // garbage after the terminator
		}
	}
	s := string(utf16.Decode(u[:n]))
	if !validName(s) {
		return ""
	}
	return s
}

func validName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// fatTime converts a FAT date and time (local time, treated as UTC).
func fatTime(date, tm uint16, centis byte) time.Time {
	if date == 0 {
		return time.Time{}
	}
	year := 1980 + int(date>>9)
	month := time.Month(date >> 5 & 0xF)
	day := int(date & 0x1F)
	sec := int(tm&0x1F) * 2
	ns := 0
	if centis < 200 {
		sec += int(centis) / 100
		ns = int(centis%100) * 10_000_000
	}
	return time.Date(year, month, day, int(tm>>11), int(tm>>5&0x3F), sec, ns, time.UTC)
}

func (d *dirent) times() (btime, mtime, atime time.Time) {
	le := binary.LittleEndian
	b := d.raw[:]
	btime = fatTime(le.Uint16(b[16:]), le.Uint16(b[14:]), b[13])
	mtime = fatTime(le.Uint16(b[24:]), le.Uint16(b[22:]), 0)
	atime = fatTime(le.Uint16(b[18:]), 0, 0)
	return
}
