package ntfs

import (
	"encoding/binary"
	"errors"
)

// lznt1 decompresses one NTFS compression unit into out, which it fills
// completely (what the stream does not cover reads as zeros). The input
// is a sequence of chunks, each decompressing to at most 4096 bytes.
func lznt1(in, out []byte) error {
	o := 0
	for i := 0; i+2 <= len(in) && o < len(out); {
		h := binary.LittleEndian.Uint16(in[i:])
		if h == 0 {
			break
		}
		size := int(h&0x0FFF) + 1
		i += 2
		if i+size > len(in) {
			return errors.New("LZNT1 chunk runs past the unit")
		}
		chunk := in[i : i+size]
		i += size
		limit := min(len(out), o+4096)
		produced := 0
		if h&0x8000 == 0 { // stored
			if len(chunk) > limit-o {
				return errors.New("LZNT1 stored chunk overflows the unit")
			}
			produced = copy(out[o:], chunk)
		} else {
			n, err := lznt1Chunk(chunk, out[o:limit])
			if err != nil {
				return err
			}
			produced = n
		}
		// Each chunk stands for 4096 bytes; what it did not produce is
		// zeros, as ntfs-3g decodes it.
		clear(out[o+produced : limit])
		o = limit
	}
	clear(out[o:])
	return nil
}

func lznt1Chunk(in, out []byte) (int, error) {
	o := 0
	for i := 0; i < len(in); {
		flags := in[i]
		i++
		for bit := 0; bit < 8 && i < len(in); bit++ {
			if flags&(1<<bit) == 0 {
				if o >= len(out) {
					return 0, errors.New("LZNT1 literal overflows the chunk")
				}
				out[o] = in[i]
				o++
				i++
				continue
			}
			if i+2 > len(in) {
				return 0, errors.New("LZNT1 truncated back-reference")
			}
			tok := int(binary.LittleEndian.Uint16(in[i:]))
			i += 2
			if o == 0 {
				return 0, errors.New("LZNT1 back-reference at the start of a chunk")
			}
			lenBits := 12
			for p := o - 1; p >= 0x10; p >>= 1 {
				lenBits--
			}
			disp := tok>>lenBits + 1
			n := tok&(1<<lenBits-1) + 3
			if disp > o || o+n > len(out) {
				return 0, errors.New("LZNT1 back-reference out of range")
			}
			for k := 0; k < n; k++ { // may overlap: byte by byte
				out[o] = out[o-disp]
				o++
			}
		}
	}
	return o, nil
}
