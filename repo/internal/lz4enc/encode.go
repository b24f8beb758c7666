package lz4enc

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

const (
	// MaxInput is the largest input Encoder.Compress accepts: every match
	// position fits in 16 bits.
	MaxInput = 1 << 16

	minMatch     = 4
	lastLiterals = 5  // the last 5 bytes of a block are always literals
	mfLimit      = 12 // the last match starts at least 12 bytes before the end
	hashLog      = 13
	hashSize     = 1 << hashLog
	// skipTrigger: after 1<<skipTrigger failed searches the step between
	// probed positions grows by one byte.
	skipTrigger = 6
)

// Encoder holds the match finder's hash table. The zero value is ready to
// use; an Encoder must not be used by two goroutines at once.
type Encoder struct {
	table [hashSize]uint16
}

// Bound is the largest output Compress produces for n input bytes; a
// destination of at least this size always suffices.
func Bound(n int) int { return n + n/255 + 16 }

// hash hashes the low 5 bytes of u (reference lz4's LZ4_hash5): five
// bytes give fewer false candidates than four, each a load from a random
// position of the block.
func hash(u uint64) uint32 { return uint32(((u << 24) * 889523592379) >> (64 - hashLog)) }

// load32 and load64 read little-endian words from b at i. They do not check
// bounds: every caller keeps i+4 (i+8) <= len(b), which the tests and the
// fuzz target exercise at every input size.
func load32(b []byte, i int) uint32 {
	return binary.LittleEndian.Uint32(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i)), 4))
}

// store64 writes v at dst[i:i+8], with a bounds check.
func store64(dst []byte, i int, v uint64) { binary.LittleEndian.PutUint64(dst[i:], v) }

func load64(b []byte, i int) uint64 {
	return binary.LittleEndian.Uint64(unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(b)), i)), 8))
}

// Compress writes src as one LZ4 block into dst and returns its length.
// It returns 0 when the block does not fit in dst: callers pass a dst
// smaller than Bound(len(src)) to give up early on data that does not
// compress enough. It panics if len(src) > MaxInput. An empty src gives a
// one-byte block.
func (e *Encoder) Compress(src, dst []byte) int {
	if len(src) > MaxInput {
		panic("lz4enc: input larger than MaxInput")
	}
	anchor, di := 0, 0
	if len(src) >= mfLimit+1 {
		anchor, di = e.compress(src, dst)
		if di < 0 {
			return 0
		}
	}
	return lastRun(src[anchor:], dst, di)
}

// compress emits every sequence but the final literals; it returns the
// start of those literals and the output length, or di < 0 if dst is full.
func (e *Encoder) compress(src, dst []byte) (anchor, di int) {
	e.table = [hashSize]uint16{}
	t := &e.table
	// A match may start at any ip < mflimitPlusOne and may extend up to
	// matchLimit; every 4- and 8-byte load below stays inside src.
	mflimitPlusOne := len(src) - mfLimit + 1
	matchLimit := len(src) - lastLiterals

	// Loads of 8 bytes at a position p < mflimitPlusOne end at most at
	// len(src)-3.
	t[hash(load64(src, 0))] = 0
	ip := 1
	forwardSeq := load64(src, ip)
	forwardH := hash(forwardSeq)
	for {
		// Find a match: probe positions with a step that grows while
		// nothing matches.
		var match int
		forwardIP := ip
		step, searchNb := 1, 1<<skipTrigger
		for {
			h, seq := forwardH, uint32(forwardSeq)
			ip = forwardIP
			forwardIP += step
			step = searchNb >> skipTrigger
			searchNb++
			if forwardIP >= mflimitPlusOne {
				return anchor, di
			}
			match = int(t[h&(hashSize-1)])
			forwardSeq = load64(src, forwardIP)
			forwardH = hash(forwardSeq)
			t[h&(hashSize-1)] = uint16(ip)
			// Table entries are earlier positions (unset ones read as 0,
			// which is earlier too, since ip >= 1), so 0 < ip-match < 64 Ki.
			if load32(src, match) == seq {
				break
			}
		}
		// Extend the match backwards over pending literals.
		for ip > anchor && match > 0 && src[ip-1] == src[match-1] {
			ip--
			match--
		}
		litLen := ip - anchor
		// Room for the token, literal length bytes, literals, offset and
		// the final literals' token; the reference encoder's margin.
		if di+litLen+litLen/255+1+2+1+lastLiterals > len(dst) {
			return 0, -1
		}
		tok := di
		di++
		if litLen >= 15 {
			dst[tok] = 15 << 4
			di = putLen(dst, di, litLen-15)
		} else {
			dst[tok] = byte(litLen << 4)
		}
		// Short runs (most of them) are copied 8 bytes at a time; the
		// check above leaves at least 9 bytes of room after them, and
		// any bytes written past the run are overwritten next.
		if litLen <= 16 && ip+8 <= len(src) {
			store64(dst, di, load64(src, anchor))
			if litLen > 8 {
				store64(dst, di+8, load64(src, anchor+8))
			}
			di += litLen
		} else {
			di += copy(dst[di:], src[anchor:ip])
		}

		for {
			// Encode the match at ip against match.
			off := ip - match
			if di+2 > len(dst) {
				return 0, -1
			}
			dst[di] = byte(off)
			dst[di+1] = byte(off >> 8)
			di += 2
			n := matchLen(src, ip+minMatch, match+minMatch, matchLimit)
			ip += n + minMatch
			if di+1+lastLiterals+(n+240)/255 > len(dst) {
				return 0, -1
			}
			if n >= 15 {
				dst[tok] |= 15
				di = putLen(dst, di, n-15)
			} else {
				dst[tok] |= byte(n)
			}
			anchor = ip
			if ip >= mflimitPlusOne {
				return anchor, di
			}
			t[hash(load64(src, ip-2))&(hashSize-1)] = uint16(ip - 2)
			// Try a match right here, without literals.
			seq := load64(src, ip)
			h := hash(seq) & (hashSize - 1)
			match = int(t[h])
			t[h] = uint16(ip)
			if load32(src, match) != uint32(seq) {
				break
			}
			tok = di
			dst[tok] = 0
			di++
		}
		ip++
		forwardSeq = load64(src, ip)
		forwardH = hash(forwardSeq)
	}
}

// putLen writes the continuation bytes of a length (already reduced by 15).
// The caller has checked that they fit.
func putLen(dst []byte, di, n int) int {
	for ; n >= 255; n -= 255 {
		dst[di] = 255
		di++
	}
	dst[di] = byte(n)
	return di + 1
}

// matchLen counts equal bytes at src[a:] and src[b:] (b < a), not reading
// at or past limit from a.
func matchLen(src []byte, a, b, limit int) int {
	start := a
	for a+8 <= limit {
		if x := load64(src, a) ^ load64(src, b); x != 0 {
			return a - start + bits.TrailingZeros64(x)>>3
		}
		a += 8
		b += 8
	}
	for a < limit && src[a] == src[b] {
		a++
		b++
	}
	return a - start
}

// lastRun appends the final literal run lit to dst[:di] and returns the
// block length, or 0 if it does not fit.
func lastRun(lit, dst []byte, di int) int {
	n := len(lit)
	if di+1+n+(n+255-15)/255 > len(dst) {
		return 0
	}
	if n >= 15 {
		dst[di] = 15 << 4
		di = putLen(dst, di+1, n-15)
	} else {
		dst[di] = byte(n << 4)
		di++
	}
	return di + copy(dst[di:], lit)
}
