package repo

import "fmt"

// blockRef is one use of a stored blob by a restore point.
type blockRef struct {
	Point string
	Disk  string
	Block int64 // -1 for a block table
	Type  BlobType
	ID    ID
	Location
}

// walkPoint calls fn for every stored blob p uses: each block table, then
// each non-zero block in it. Tables that cannot be loaded are reported
// through fn's caller as errors, and their blocks are skipped.
func (r *Repository) walkPoint(p *RestorePoint, fn func(blockRef) error) error {
	for di := range p.Disks {
		d := &p.Disks[di]
		dr, err := r.OpenDisk(p, d.Name, 1)
		if err != nil {
			return err
		}
		for _, t := range d.Tables {
			if err := fn(blockRef{Point: p.ID, Disk: d.Name, Block: -1, Type: BlobTable, ID: t.ID, Location: t.location()}); err != nil {
				return err
			}
			tbl, err := dr.Table(t.Index)
			if err != nil {
				return err
			}
			first := int64(t.Index) * int64(d.TableSize)
			for i, e := range tbl {
				if e.IsZero() {
					continue
				}
				if first+int64(i) >= d.Blocks() {
					return fmt.Errorf("%w: restore point %s disk %s table %d has entries past the end of the disk", ErrCorrupt, p.ID, d.Name, t.Index)
				}
				if err := fn(blockRef{Point: p.ID, Disk: d.Name, Block: first + int64(i), Type: BlobData, ID: e.ID, Location: e.Location}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (b blockRef) String() string {
	if b.Block < 0 {
		return fmt.Sprintf("restore point %s disk %s block table", b.Point, b.Disk)
	}
	return fmt.Sprintf("restore point %s disk %s block %d", b.Point, b.Disk, b.Block)
}
