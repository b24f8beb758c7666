package ntfs

import (
	"slices"
)

// extent maps n clusters of a stream starting at vcn to the volume at
// lcn; lcn < 0 is a hole (sparse, or the unused tail of a compression
// unit).
type extent struct {
	vcn, lcn, n int64
}

const maxExtents = 1 << 20 // per stream, whatever the records say

// decodeRuns decodes a mapping-pairs array starting at vcn. clusters
// bounds every LCN.
func decodeRuns(b []byte, vcn, lastVCN, clusters int64, what string) ([]extent, error) {
	var out []extent
	lcn := int64(0)
	for i := 0; i < len(b); {
		h := b[i]
		if h == 0 {
			break
		}
		ls, os := int(h&0xF), int(h>>4)
		i++
		if ls == 0 || ls > 8 || os > 8 || i+ls+os > len(b) {
			return nil, malformed("%s: mapping pair header 0x%02x at %d", what, h, i-1)
		}
		n := signedLE(b[i:i+ls], false)
		i += ls
		if n <= 0 || n > clusters {
			return nil, malformed("%s: run of %d clusters", what, n)
		}
		e := extent{vcn: vcn, lcn: -1, n: n}
		if os > 0 {
			lcn += signedLE(b[i:i+os], true)
			i += os
			if lcn < 0 || lcn >= clusters || lcn+n > clusters {
				return nil, malformed("%s: run of %d clusters at LCN %d outside the volume (%d clusters)", what, n, lcn, clusters)
			}
			e.lcn = lcn
		}
		out = append(out, e)
		if len(out) > maxExtents {
			return nil, malformed("%s: more than %d runs", what, maxExtents)
		}
		vcn += n
	}
	if vcn != lastVCN+1 && !(len(out) == 0 && lastVCN == -1) {
		return nil, malformed("%s: runs end at VCN %d, attribute says %d", what, vcn-1, lastVCN)
	}
	return out, nil
}

func signedLE(b []byte, signed bool) int64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	if signed && len(b) < 8 && b[len(b)-1]&0x80 != 0 {
		v |= ^uint64(0) << (8 * uint(len(b)))
	}
	return int64(v)
}

// findExtent returns the index of the extent holding vcn, or -1.
func findExtent(ex []extent, vcn int64) int {
	i, ok := slices.BinarySearchFunc(ex, vcn, func(e extent, v int64) int {
		switch {
		case v < e.vcn:
			return 1
		case v >= e.vcn+e.n:
			return -1
		}
		return 0
	})
	if !ok {
		return -1
	}
	return i
}
