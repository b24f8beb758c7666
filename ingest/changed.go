package ingest

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cairn-backup/cairn/repo"
)

// Extent is a byte range of a disk.
type Extent struct {
	Off, Len int64
}

// ErrNoBase means a disk cannot be backed up as changes to the parent
// restore point: the parent lacks the disk, or its geometry differs. The
// caller should take a full backup instead.
var ErrNoBase = errors.New("the parent restore point cannot serve as the base of an incremental backup")

// CheckBase reports whether disk name of parent can be the base of an
// incremental backup of a disk of size bytes into r (nil), or why not
// (an error wrapping ErrNoBase).
func CheckBase(r *repo.Repository, parent *repo.RestorePoint, name string, size int64) error {
	if parent == nil {
		return fmt.Errorf("%w: there is none", ErrNoBase)
	}
	d, err := parent.Disk(name)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoBase, err)
	}
	cfg := r.Config()
	if d.BlockSize != cfg.BlockSize || d.TableSize != cfg.TableSize {
		return fmt.Errorf("%w: restore point %s disk %s has block size %d × %d, the repository %d × %d",
			ErrNoBase, parent.ID, name, d.BlockSize, d.TableSize, cfg.BlockSize, cfg.TableSize)
	}
	if d.Size != size {
		return fmt.Errorf("%w: disk %s was %d bytes in restore point %s and is %d bytes now", ErrNoBase, name, d.Size, parent.ID, size)
	}
	return nil
}

// blockRuns turns byte extents into sorted, merged runs of whole blocks
// [first, last] that cover them, clipped to blocks below nblocks.
func blockRuns(ext []Extent, bs, nblocks int64) [][2]int64 {
	var runs [][2]int64
	for _, e := range ext {
		if e.Len <= 0 || e.Off < 0 {
			continue
		}
		first, last := e.Off/bs, min((e.Off+e.Len-1)/bs, nblocks-1)
		if first <= last {
			runs = append(runs, [2]int64{first, last})
		}
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i][0] < runs[j][0] })
	out := runs[:0]
	for _, r := range runs {
		if n := len(out); n > 0 && r[0] <= out[n-1][1]+1 {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// produceChanged is the producer of an incremental backup: it reads only
// the blocks that the changed extents touch and takes every other block
// from the parent, unread. A table without changed blocks is the parent's
// table reference itself (not even loaded); a table with some starts as a
// copy of the parent's entries and gets the changed blocks filled in.
// Within changed blocks the source's own allocation map is not consulted:
// the changed extents are what must be read.
func (di *diskIngest) produceChanged(changed []Extent, parent *repo.DiskReader) func(context.Context, chan<- batch, chan<- *tableJob) error {
	return func(ctx context.Context, batches chan<- batch, tables chan<- *tableJob) error {
		nblocks := (di.size + di.bs - 1) / di.bs
		ntables := (nblocks + di.ts - 1) / di.ts
		runs := blockRuns(changed, di.bs, nblocks)
		parentRefs := make(map[uint32]repo.TableRef, len(parent.Disk().Tables))
		for _, t := range parent.Disk().Tables {
			parentRefs[t.Index] = t
		}
		send := func(t *tableJob) error {
			select {
			case tables <- t:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		ri := 0
		for t := int64(0); t < ntables; t++ {
			tFirst, tLast := t*di.ts, min((t+1)*di.ts, nblocks)-1
			for ri < len(runs) && runs[ri][1] < tFirst {
				ri++
			}
			if ri == len(runs) || runs[ri][0] > tLast { // unchanged table
				di.prog.Done.Add(min((tLast+1)*di.bs, di.size) - tFirst*di.bs)
				if ref, ok := parentRefs[uint32(t)]; ok {
					if err := send(&tableJob{index: uint32(t), reuse: &ref}); err != nil {
						return err
					}
				}
				continue
			}
			job := &tableJob{index: uint32(t), entries: make([]repo.BlockEntry, di.ts)}
			pt, err := parent.Table(uint32(t))
			if err != nil {
				return fmt.Errorf("parent restore point: %w", err)
			}
			copy(job.entries, pt) // nil (all zeros) copies nothing
			job.pending.Add(1)    // the producer's hold
			if err := send(job); err != nil {
				job.pending.Done()
				return err
			}
			covered := int64(0)
			for j := ri; j < len(runs) && runs[j][0] <= tLast; j++ {
				first, last := max(runs[j][0], tFirst), min(runs[j][1], tLast)
				for b := first; b <= last; {
					n := min(batchBlocks, last-b+1)
					job.pending.Add(1)
					select {
					case batches <- batch{table: job, first: b, n: n}:
					case <-ctx.Done():
						job.pending.Done()
						job.pending.Done()
						return ctx.Err()
					}
					b += n
				}
				covered += min((last+1)*di.bs, di.size) - first*di.bs
			}
			di.prog.Done.Add(min((tLast+1)*di.bs, di.size) - tFirst*di.bs - covered)
			job.pending.Done()
		}
		return nil
	}
}
