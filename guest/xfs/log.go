package xfs

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Log record constants (xfs_log_format.h).
const (
	logHeaderMagic  = 0xfeedbabe
	logUnmountTrans = 0x20
	logBB           = 512
	logCycleSize    = 32 << 10 // XLOG_HEADER_CYCLE_SIZE
	logMaxRecordBBs = (256<<10)/logBB + 8*2
)

// LogClean reports whether the internal log ends with an unmount record,
// i.e. the file system was cleanly unmounted. The reader never replays the
// log: on a dirty log it shows the on-disk metadata as the crashed (or
// still running) guest left it, which may miss the last seconds of
// changes. Callers should log a warning when LogClean is false.
//
// The head of the log is found as the kernel does: by binary search for the
// point where the cycle number stamped on each 512-byte log block drops.
func (f *FS) LogClean() (bool, error) {
	sb := f.sb
	if sb.logStart == 0 {
		return false, errors.New("xfs: external log device; its state cannot be checked")
	}
	base, ok := sb.fsbOffset(sb.logStart)
	end, ok2 := sb.fsbOffset(sb.logStart + uint64(sb.logBlocks) - 1)
	if !ok || !ok2 || sb.logBlocks == 0 || end-base != int64(sb.logBlocks-1)<<sb.blockLog {
		return false, malformed("log at block %d (+%d) out of range", sb.logStart, sb.logBlocks)
	}
	nbb := int64(sb.logBlocks) << sb.blockLog / logBB
	blk := make([]byte, logBB)
	cycle := func(i int64) (uint32, error) {
		if err := f.readAt(blk, base+i*logBB); err != nil {
			return 0, fmt.Errorf("xfs: reading log block %d: %w", i, err)
		}
		be := binary.BigEndian
		if be.Uint32(blk) == logHeaderMagic {
			return be.Uint32(blk[4:]), nil
		}
		return be.Uint32(blk), nil
	}
	first, err := cycle(0)
	if err != nil {
		return false, err
	}
	if first == 0 {
		return true, nil // zeroed log (mkfs or xfs_repair -L): nothing to replay
	}
	last, err := cycle(nbb - 1)
	if err != nil {
		return false, err
	}
	head := nbb
	if last != first {
		lo, hi := int64(0), nbb-1 // cycle(lo) == first, cycle(hi) != first
		for hi-lo > 1 {
			mid := lo + (hi-lo)/2
			c, err := cycle(mid)
			if err != nil {
				return false, err
			}
			if c == first {
				lo = mid
			} else {
				hi = mid
			}
		}
		head = hi
	}
	return f.lastRecordUnmounts(base, nbb, head)
}

// lastRecordUnmounts finds the last record header before block head
// (wrapping to the end of the log) and reports whether its only operation
// is an unmount.
func (f *FS) lastRecordUnmounts(base, nbb, head int64) (bool, error) {
	be := binary.BigEndian
	blk := make([]byte, logBB)
	for back := int64(1); back <= min(nbb, logMaxRecordBBs); back++ {
		i := (head - back + nbb) % nbb
		if err := f.readAt(blk, base+i*logBB); err != nil {
			return false, fmt.Errorf("xfs: reading log block %d: %w", i, err)
		}
		if be.Uint32(blk) != logHeaderMagic {
			continue
		}
		hblks := int64(1)
		if be.Uint32(blk[8:])&2 != 0 { // XLOG_VERSION_2: h_size may need more header blocks
			if size := int64(be.Uint32(blk[320:])); size > logCycleSize {
				hblks = (size + logCycleSize - 1) / logCycleSize
			}
		}
		if be.Uint32(blk[40:]) != 1 {
			return false, nil // the last record is ordinary transactions
		}
		op := make([]byte, logBB)
		j := (i + hblks) % nbb
		if err := f.readAt(op, base+j*logBB); err != nil {
			return false, fmt.Errorf("xfs: reading log block %d: %w", j, err)
		}
		return op[9]&logUnmountTrans != 0, nil
	}
	return false, malformed("no log record header within %d blocks before the log head %d", logMaxRecordBBs, head)
}
