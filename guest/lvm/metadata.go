package lvm

import (
	"fmt"
	"strings"
)

// VG is one volume group's metadata as an LVM2 text metadata area holds it.
type VG struct {
	Name       string
	UUID       string // as written, with dashes
	Seqno      int64  // incremented on every change; the highest copy wins
	ExtentSize int64  // bytes
	PVs        []PVRef
	LVs        []LV
}

// PVRef is a physical volume as the VG metadata names it.
type PVRef struct {
	Name    string // key in the metadata, "pv0", ...
	UUID    string // without dashes, as in the PV label
	Device  string // device path when the metadata was written (a hint only)
	PEStart int64  // bytes from the start of the PV to its first extent
	PECount int64
}

// LV is one logical volume and its segments, in extent order.
type LV struct {
	Name     string
	UUID     string
	Visible  bool // false for internal volumes (pool data, raid images, logs)
	Segments []Segment
	// Unsupported says why the LV's content cannot be mapped ("" when it
	// can): thin, snapshot, raid, mirror, cache and other segment types
	// that need device-mapper logic beyond a linear or striped map.
	Unsupported string
}

// Segment maps ExtentCount logical extents starting at StartExtent.
type Segment struct {
	StartExtent int64
	ExtentCount int64
	Type        string // "striped" (linear is one stripe), or an unsupported type
	StripeSize  int64  // bytes, for more than one stripe
	Stripes     []Stripe

	cowStore string // for a "snapshot" segment: the LV holding its exceptions
}

// Stripe is one area of a segment: a PV (by its metadata name) and the
// first physical extent on it.
type Stripe struct {
	PV          string
	StartExtent int64
}

const (
	maxCount   = 1 << 40 // bound on extent counts and sizes in sectors
	maxStripes = 128
)

// ParseVG parses LVM2 text metadata (as `vgcfgbackup` writes it too).
func ParseVG(text []byte) (*VG, error) {
	top, err := parseText(text)
	if err != nil {
		return nil, err
	}
	var vgSec *section
	vg := &VG{}
	for _, it := range top.items {
		if it.val.section != nil {
			if vgSec != nil {
				return nil, malformed("metadata holds more than one volume group")
			}
			vgSec, vg.Name = it.val.section, it.name
		}
	}
	if vgSec == nil {
		return nil, malformed("metadata holds no volume group")
	}
	d := decoder{what: "VG " + vg.Name}
	vg.UUID = d.str(vgSec, "id")
	vg.Seqno = d.num(vgSec, "seqno", 0, 1<<62)
	vg.ExtentSize = d.num(vgSec, "extent_size", 1, maxCount) * sectorSize
	if pvs, ok := vgSec.get("physical_volumes"); ok && pvs.section != nil {
		for _, it := range pvs.section.items {
			if it.val.section == nil {
				continue
			}
			s := it.val.section
			pd := decoder{what: fmt.Sprintf("VG %s PV %s", vg.Name, it.name)}
			ref := PVRef{
				Name:    it.name,
				UUID:    strings.ReplaceAll(pd.str(s, "id"), "-", ""),
				PEStart: pd.num(s, "pe_start", 0, maxCount) * sectorSize,
				PECount: pd.num(s, "pe_count", 0, maxCount),
			}
			if dv, ok := s.get("device"); ok && dv.isStr {
				ref.Device = dv.str
			}
			if pd.err != nil {
				return nil, pd.err
			}
			vg.PVs = append(vg.PVs, ref)
		}
	}
	if lvs, ok := vgSec.get("logical_volumes"); ok && lvs.section != nil {
		for _, it := range lvs.section.items {
			if it.val.section == nil {
				continue
			}
			lv, err := parseLV(vg.Name, it.name, it.val.section)
			if err != nil {
				return nil, err
			}
			vg.LVs = append(vg.LVs, lv)
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	markCOWStores(vg)
	return vg, nil
}

func parseLV(vgName, name string, s *section) (LV, error) {
	d := decoder{what: fmt.Sprintf("LV %s/%s", vgName, name)}
	lv := LV{Name: name, UUID: d.str(s, "id")}
	if st, ok := s.get("status"); ok {
		for _, v := range st.list {
			if v.str == "VISIBLE" {
				lv.Visible = true
			}
		}
	}
	for _, it := range s.items {
		if it.val.section == nil || !strings.HasPrefix(it.name, "segment") {
			continue
		}
		ss := it.val.section
		sd := decoder{what: fmt.Sprintf("LV %s/%s %s", vgName, name, it.name)}
		seg := Segment{
			StartExtent: sd.num(ss, "start_extent", 0, maxCount),
			ExtentCount: sd.num(ss, "extent_count", 1, maxCount),
			Type:        sd.str(ss, "type"),
		}
		if sd.err != nil {
			return lv, sd.err
		}
		switch seg.Type {
		case "striped", "linear":
			n := sd.num(ss, "stripe_count", 1, maxStripes)
			if n > 1 {
				seg.StripeSize = sd.num(ss, "stripe_size", 1, maxCount) * sectorSize
			}
			list, ok := ss.get("stripes")
			if sd.err == nil && (!ok || !list.isList || int64(len(list.list)) != 2*n) {
				return lv, malformed("%s: stripes list does not hold %d (PV, extent) pairs", sd.what, n)
			}
			if sd.err != nil {
				return lv, sd.err
			}
			if seg.ExtentCount%n != 0 {
				return lv, malformed("%s: %d extents do not divide into %d stripes", sd.what, seg.ExtentCount, n)
			}
			for i := int64(0); i < n; i++ {
				pv, ext := list.list[2*i], list.list[2*i+1]
				if !pv.isStr || !ext.isNum || ext.num < 0 || ext.num > maxCount {
					return lv, malformed("%s: stripe %d is not a (PV, extent) pair", sd.what, i)
				}
				seg.Stripes = append(seg.Stripes, Stripe{PV: pv.str, StartExtent: ext.num})
			}
		default:
			if seg.Type == "snapshot" {
				if c, ok := ss.get("cow_store"); ok && c.isStr {
					seg.cowStore = c.str
				}
			}
			if lv.Unsupported == "" {
				lv.Unsupported = fmt.Sprintf("segment type %q is not supported (only linear and striped LVs are read)", seg.Type)
			}
		}
		lv.Segments = append(lv.Segments, seg)
	}
	return lv, nil
}

// markCOWStores marks the copy-on-write store of an old-style snapshot
// unsupported: its extents hold exception data, not the snapshot's view.
func markCOWStores(vg *VG) {
	for _, lv := range vg.LVs {
		for _, seg := range lv.Segments {
			if seg.cowStore == "" {
				continue
			}
			for i := range vg.LVs {
				if vg.LVs[i].Name == seg.cowStore {
					vg.LVs[i].Unsupported = "it is the copy-on-write store of a snapshot; snapshots are not supported"
				}
			}
		}
	}
}

// decoder reads typed fields of a section, remembering the first error.
type decoder struct {
	what string
	err  error
}

func (d *decoder) str(s *section, key string) string {
	v, ok := s.get(key)
	if !ok || !v.isStr {
		if d.err == nil {
			d.err = malformed("%s: missing string %s", d.what, key)
		}
		return ""
	}
	return v.str
}

func (d *decoder) num(s *section, key string, lo, hi int64) int64 {
	v, ok := s.get(key)
	if !ok || !v.isNum || v.num < lo || v.num > hi {
		if d.err == nil {
			d.err = malformed("%s: %s missing or outside [%d, %d]", d.what, key, lo, hi)
		}
		return lo
	}
	return v.num
}
