package ext

import (
	"fmt"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// maxRuns bounds the map of one file: a file fragmented into more
// physically discontiguous pieces than this is refused rather than held in
// memory (32 bytes a run: 64 MiB).
const maxRuns = 1 << 21

// run maps n logical blocks starting at log to physical blocks starting
// at phys. Logical blocks no run covers are holes and read as zeros.
type run struct {
	log, phys, n uint64
}

// runList collects a file's runs in logical order, merging neighbours
// that are contiguous both logically and physically.
type runList struct {
	ino    uint64
	runs   []run
	limit  uint64          // logical blocks of the file; mappings past it are dropped
	blocks uint64          // blocks in the volume; mappings past it are malformed
	next   uint64          // first logical block not yet mapped
	mapped uint64          // blocks mapped so far; more than the volume has is malformed
	seen   map[uint64]bool // indirect blocks or extent tree nodes already walked
}

// visit records a metadata block of the file's map; a block met twice
// means the map loops or is shared, which is malformed.
func (l *runList) visit(blk uint64) error {
	if l.seen == nil {
		l.seen = map[uint64]bool{}
	}
	if l.seen[blk] {
		return fmt.Errorf("ext: inode %d: map block %d used twice: %w", l.ino, blk, vfs.ErrMalformed)
	}
	l.seen[blk] = true
	if l.mapped++; l.mapped > l.blocks {
		return fmt.Errorf("ext: inode %d maps more blocks than the volume has: %w", l.ino, vfs.ErrMalformed)
	}
	return nil
}

func (l *runList) add(log, phys, n uint64) error {
	if n == 0 {
		return nil
	}
	if log < l.next {
		return fmt.Errorf("ext: inode %d: logical block %d mapped twice: %w", l.ino, log, vfs.ErrMalformed)
	}
	if phys == 0 || phys >= l.blocks || n > l.blocks-phys {
		return fmt.Errorf("ext: inode %d: blocks %d+%d outside the volume of %d blocks: %w", l.ino, phys, n, l.blocks, vfs.ErrMalformed)
	}
	l.next = log + n
	if l.mapped += n; l.mapped > l.blocks {
		return fmt.Errorf("ext: inode %d maps more blocks than the volume has: %w", l.ino, vfs.ErrMalformed)
	}
	if log >= l.limit {
		return nil
	}
	n = min(n, l.limit-log)
	if k := len(l.runs); k > 0 {
		p := &l.runs[k-1]
		if p.log+p.n == log && p.phys+p.n == phys {
			p.n += n
			return nil
		}
	}
	if len(l.runs) >= maxRuns {
		return fmt.Errorf("ext: inode %d: more than %d fragments: %w", l.ino, maxRuns, vfs.ErrMalformed)
	}
	l.runs = append(l.runs, run{log: log, phys: phys, n: n})
	return nil
}

// fileRuns maps the content of an inode that keeps it in blocks.
func (f *FS) fileRuns(in *inode) ([]run, error) {
	l := &runList{
		ino:    in.ino,
		limit:  (in.size + f.sb.blockSize - 1) / f.sb.blockSize,
		blocks: f.sb.blocksCount,
	}
	var err error
	if in.flags&flagExtents != 0 {
		err = f.extentRuns(in, l)
	} else {
		err = f.blockMapRuns(in, l)
	}
	if err != nil {
		return nil, err
	}
	return l.runs, nil
}
