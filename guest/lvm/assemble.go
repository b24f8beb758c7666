package lvm

import (
	"errors"
	"fmt"
	"io"
	"sort"
)

// ErrMissingPV is wrapped by Volume.Err when an LV needs a physical volume
// that was not among those given to Assemble.
var ErrMissingPV = errors.New("lvm: physical volume missing")

// ErrUnsupported is wrapped by Volume.Err for LVs whose layout cannot be
// mapped without device-mapper (thin, snapshot, raid, mirror, cache, ...).
var ErrUnsupported = errors.New("lvm: logical volume type not supported")

// Volume is one visible logical volume. When Err is nil, ReaderAt reads
// the LV's content: LV offsets are mapped to (PV, offset) through the
// segment table; nothing is activated.
type Volume struct {
	VG   string
	Name string
	UUID string
	Size int64
	io.ReaderAt
	Err error
}

// Assemble groups PVs by volume group, picks each VG's newest metadata
// (highest seqno among its PVs' copies) and returns one Volume per visible
// LV, in metadata order, VGs sorted by name. A PV that belongs to no VG is
// ignored. An LV that needs a missing PV or has an unsupported type is
// returned with Err set, never silently dropped.
func Assemble(pvs []*PV) ([]Volume, error) {
	byUUID := map[string]*PV{}
	vgs := map[string]*VG{}
	for _, pv := range pvs {
		if old, dup := byUUID[pv.UUID]; dup && old != pv {
			return nil, fmt.Errorf("lvm: PV UUID %s appears on two devices (multipath or a cloned disk?)", pv.UUID)
		}
		byUUID[pv.UUID] = pv
		if m := pv.Metadata; m != nil {
			if cur := vgs[m.UUID]; cur == nil || m.Seqno > cur.Seqno {
				vgs[m.UUID] = m
			}
		}
	}
	keys := make([]string, 0, len(vgs))
	for k := range vgs {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := vgs[keys[i]], vgs[keys[j]]
		return a.Name < b.Name || a.Name == b.Name && keys[i] < keys[j]
	})
	var out []Volume
	for _, k := range keys {
		vg := vgs[k]
		for _, lv := range vg.LVs {
			if !lv.Visible {
				continue
			}
			v := Volume{VG: vg.Name, Name: lv.Name, UUID: lv.UUID}
			r, size, err := mapLV(vg, lv, byUUID)
			v.Size = size
			if err != nil {
				v.Err = err
			} else {
				v.ReaderAt = r
			}
			out = append(out, v)
		}
	}
	return out, nil
}

// piece is one segment, resolved to its PVs.
type piece struct {
	start, size int64 // LV bytes
	stripeSize  int64 // 0 for one stripe
	areas       []pvArea
}

type pvArea struct {
	r    io.ReaderAt
	off  int64 // byte offset of the stripe's first extent on the PV
	size int64 // bytes of this stripe
}

func mapLV(vg *VG, lv LV, byUUID map[string]*PV) (*lvReader, int64, error) {
	name := vg.Name + "/" + lv.Name
	var size int64
	for _, s := range lv.Segments {
		size += s.ExtentCount * vg.ExtentSize
	}
	if size < 0 || size > 1<<62 {
		return nil, 0, malformed("LV %s: size overflows", name)
	}
	if lv.Unsupported != "" {
		return nil, size, fmt.Errorf("%w: LV %s: %s", ErrUnsupported, name, lv.Unsupported)
	}
	refs := map[string]PVRef{}
	for _, p := range vg.PVs {
		refs[p.Name] = p
	}
	segs := append([]Segment(nil), lv.Segments...)
	sort.Slice(segs, func(i, j int) bool { return segs[i].StartExtent < segs[j].StartExtent })
	r := &lvReader{name: name, size: size}
	var next int64
	for _, s := range segs {
		if s.StartExtent != next {
			return nil, size, malformed("LV %s: segments leave a gap or overlap at extent %d", name, next)
		}
		next += s.ExtentCount
		n := int64(len(s.Stripes))
		pc := piece{start: s.StartExtent * vg.ExtentSize, size: s.ExtentCount * vg.ExtentSize, stripeSize: s.StripeSize}
		if n > 1 && (s.StripeSize <= 0 || vg.ExtentSize%s.StripeSize != 0) {
			return nil, size, malformed("LV %s: stripe size %d does not divide the extent size", name, s.StripeSize)
		}
		for _, st := range s.Stripes {
			ref, ok := refs[st.PV]
			if !ok {
				return nil, size, malformed("LV %s: segment names unknown PV %q", name, st.PV)
			}
			per := s.ExtentCount / n
			if st.StartExtent+per > ref.PECount {
				return nil, size, malformed("LV %s: extents %d+%d beyond the %d extents of %s", name, st.StartExtent, per, ref.PECount, st.PV)
			}
			pv := byUUID[ref.UUID]
			if pv == nil {
				dev := ""
				if ref.Device != "" {
					dev = ", last seen as " + ref.Device
				}
				return nil, size, fmt.Errorf("%w: LV %s needs PV %s (%s in VG %s%s), which is not attached: give every disk of the VG",
					ErrMissingPV, name, ref.UUID, ref.Name, vg.Name, dev)
			}
			end := ref.PEStart + (st.StartExtent+per)*vg.ExtentSize
			if end > pv.size {
				return nil, size, malformed("LV %s: extents end at byte %d of PV %s, which has %d", name, end, ref.UUID, pv.size)
			}
			pc.areas = append(pc.areas, pvArea{r: pv.r, off: ref.PEStart + st.StartExtent*vg.ExtentSize, size: per * vg.ExtentSize})
		}
		r.pieces = append(r.pieces, pc)
	}
	return r, size, nil
}

// lvReader maps LV offsets to PV offsets: binary search for the segment,
// arithmetic within it, one ReadAt per contiguous run.
type lvReader struct {
	name   string
	size   int64
	pieces []piece
}

func (r *lvReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("lvm: LV %s: negative offset", r.name)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > r.size-off {
		p = p[:r.size-off]
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		i := sort.Search(len(r.pieces), func(i int) bool { return r.pieces[i].start+r.pieces[i].size > pos })
		pc := r.pieces[i]
		rel := pos - pc.start
		n := min(int64(len(p)-done), pc.size-rel)
		area, aoff := pc.areas[0], rel
		if len(pc.areas) > 1 {
			chunk := rel / pc.stripeSize
			k := int64(len(pc.areas))
			area = pc.areas[chunk%k]
			aoff = (chunk/k)*pc.stripeSize + rel%pc.stripeSize
			n = min(n, pc.stripeSize-rel%pc.stripeSize)
		}
		m, err := area.r.ReadAt(p[done:done+int(n)], area.off+aoff)
		done += m
		if m < int(n) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, fmt.Errorf("lvm: LV %s: reading PV at %d: %w", r.name, area.off+aoff, err)
		}
	}
	if done < want {
		return done, io.EOF
	}
	return done, nil
}
