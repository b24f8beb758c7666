package ext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sort"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// jbd2 on-disk constants (all journal fields are big-endian).
const (
	jbdMagic = 0xC03B3998

	jbdDescriptor = 1
	jbdCommit     = 2
	jbdSuperV1    = 3
	jbdSuperV2    = 4
	jbdRevoke     = 5

	jbdFeatRevoke     = 0x1
	jbdFeat64bit      = 0x2
	jbdFeatAsync      = 0x4
	jbdFeatCsumV2     = 0x8
	jbdFeatCsumV3     = 0x10
	jbdFeatFastCommit = 0x20

	jbdFlagEscape   = 0x1
	jbdFlagSameUUID = 0x2
	jbdFlagLastTag  = 0x8

	jbdDefaultFCBlocks = 256

	// maxJournalBlocks bounds the log this reader replays, and so the
	// memory of the replay (real journals are at most 2^18..2^20 blocks).
	maxJournalBlocks = 1 << 23
	maxRevoked       = 1 << 22
)

// ErrExternalJournal is returned by (*FS).JournalWarning when the file
// system needs recovery from a journal on another device: it was read
// without replay, as it was on disk, and may lack the last writes.
var ErrExternalJournal = errors.New("ext: file system needs recovery from an external journal; read without replay")

// ErrEncrypted is returned for the content of an fscrypt-encrypted inode.
var ErrEncrypted = errors.New("ext: file is encrypted")

// Recovery describes what Open did with the journal.
type Recovery struct {
	NeedsRecovery bool // the superblock's needs_recovery flag was set
	External      bool // the journal is on another device and was not replayed
	Transactions  int  // committed transactions replayed in memory
	Blocks        int  // distinct file system blocks the replay rewrote
	wrapped       bool // the replayed log wrapped round the end of the journal
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c as the kernel computes it: no pre- or post-inversion.
func crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// journal is an internal jbd2 journal being replayed.
type journal struct {
	f        *FS
	ino      uint64
	runs     []run
	bs       uint64
	first    uint32 // first log block
	last     uint32 // one past the last log block
	seq      uint32 // sequence of the oldest transaction in the log
	start    uint32 // log block of that transaction; 0 when clean
	incompat uint32
	tagBytes int
	csum     bool // checksum v2 or v3: descriptor/revoke tails, commit checksums
	seed     uint32
	wrapped  bool // the scan went past the end of the log (tests)
}

// replayJournal replays the internal journal, returning the overlay of
// replayed blocks. It reads only the raw image (f.dev has no overlay yet).
func (f *FS) replayJournal(ino uint64) (map[uint64]overlayBlock, Recovery, error) {
	rec := Recovery{NeedsRecovery: true}
	j, err := f.loadJournal(ino)
	if err != nil {
		return nil, rec, err
	}
	if j.start == 0 {
		return nil, rec, nil // clean journal: nothing to replay
	}
	end, err := j.pass(passScan, nil, nil)
	if err != nil {
		return nil, rec, err
	}
	revoked := map[uint64]uint32{}
	if j.incompat&jbdFeatRevoke != 0 {
		if _, err := j.pass(passRevoke, revoked, &end); err != nil {
			return nil, rec, err
		}
	}
	overlay := map[uint64]overlayBlock{}
	if _, err := j.pass(passReplay, revoked, &end, overlay); err != nil {
		return nil, rec, err
	}
	rec.Transactions = int(end - j.seq)
	rec.Blocks = len(overlay)
	rec.wrapped = j.wrapped
	return overlay, rec, nil
}

func (f *FS) loadJournal(ino uint64) (*journal, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return nil, fmt.Errorf("ext: journal inode: %w", err)
	}
	runs, err := f.fileRuns(in)
	if err != nil {
		return nil, fmt.Errorf("ext: journal inode: %w", err)
	}
	j := &journal{f: f, ino: ino, runs: runs, bs: f.sb.blockSize}
	b, err := j.block(0)
	if err != nil {
		return nil, err
	}
	be := binary.BigEndian
	bad := func(format string, a ...any) error {
		return fmt.Errorf("ext: journal superblock: "+format+": %w", append(a, vfs.ErrMalformed)...)
	}
	if be.Uint32(b) != jbdMagic {
		return nil, bad("magic 0x%08x", be.Uint32(b))
	}
	switch be.Uint32(b[4:]) {
	case jbdSuperV1:
	case jbdSuperV2:
		j.incompat = be.Uint32(b[0x28:])
	default:
		return nil, bad("block type %d", be.Uint32(b[4:]))
	}
	if bsz := be.Uint32(b[0xC:]); uint64(bsz) != j.bs {
		return nil, bad("block size %d, file system's %d", bsz, j.bs)
	}
	maxlen := be.Uint32(b[0x10:])
	j.first, j.seq, j.start = be.Uint32(b[0x14:]), be.Uint32(b[0x18:]), be.Uint32(b[0x1C:])
	j.last = maxlen
	if j.incompat&jbdFeatFastCommit != 0 {
		fc := be.Uint32(b[0x54:])
		if fc == 0 {
			fc = jbdDefaultFCBlocks
		}
		if fc >= maxlen {
			return nil, bad("%d fast commit blocks of %d", fc, maxlen)
		}
		j.last = maxlen - fc
	}
	if maxlen > maxJournalBlocks || uint64(maxlen) > (in.size+j.bs-1)/j.bs || j.first == 0 || j.first >= j.last ||
		(j.start != 0 && (j.start < j.first || j.start >= j.last)) {
		return nil, bad("log %d..%d, start %d, journal of %d bytes", j.first, j.last, j.start, in.size)
	}
	j.csum = j.incompat&(jbdFeatCsumV2|jbdFeatCsumV3) != 0
	switch {
	case j.incompat&jbdFeatCsumV3 != 0:
		j.tagBytes = 16
	default:
		j.tagBytes = 8
		if j.incompat&jbdFeatCsumV2 != 0 {
			j.tagBytes += 2
		}
		if j.incompat&jbdFeat64bit != 0 {
			j.tagBytes += 4
		}
	}
	j.seed = crc32c(^uint32(0), b[0x30:0x40])
	return j, nil
}

// phys maps a journal block to its file system block.
func (j *journal) phys(n uint32) (uint64, error) {
	i := sort.Search(len(j.runs), func(i int) bool { return j.runs[i].log+j.runs[i].n > uint64(n) })
	if i == len(j.runs) || j.runs[i].log > uint64(n) {
		return 0, fmt.Errorf("ext: journal block %d is a hole: %w", n, vfs.ErrMalformed)
	}
	return j.runs[i].phys + uint64(n) - j.runs[i].log, nil
}

func (j *journal) block(n uint32) ([]byte, error) {
	p, err := j.phys(n)
	if err != nil {
		return nil, err
	}
	b := make([]byte, j.bs)
	if err := j.f.dev.rawReadAt(b, int64(p*j.bs)); err != nil {
		return nil, fmt.Errorf("ext: journal block %d: %w", n, err)
	}
	return b, nil
}

func (j *journal) wrap(n uint32) uint32 {
	if n >= j.last {
		j.wrapped = true
		n -= j.last - j.first
	}
	return n
}

type passKind int

const (
	passScan passKind = iota
	passRevoke
	passReplay
)

// tidGEQ compares transaction IDs modulo 2^32, as jbd2 does.
func tidGEQ(a, b uint32) bool { return int32(a-b) >= 0 }

// pass walks the log from its start as jbd2's do_one_pass does. The scan
// pass finds the end: the first block that is not the next expected
// transaction's, or a commit block whose checksum fails. It returns the
// ID of the first transaction not to replay. The revoke pass collects
// revoked blocks with the newest transaction that revoked each; the
// replay pass records, for every tagged block not revoked by the same or
// a later transaction, where its newest copy lies.
func (j *journal) pass(kind passKind, revoked map[uint64]uint32, end *uint32, overlay ...map[uint64]overlayBlock) (uint32, error) {
	be := binary.BigEndian
	next := j.seq
	blk := j.start
	logLen := j.last - j.first
	for visited := uint32(0); ; {
		if kind != passScan && tidGEQ(next, *end) {
			break
		}
		if visited++; visited > logLen {
			if kind == passScan {
				break // a log that goes round more than once ends here
			}
			return 0, fmt.Errorf("ext: journal: transaction %d runs past the log: %w", next, vfs.ErrMalformed)
		}
		b, err := j.block(blk)
		if err != nil {
			return 0, err
		}
		blk = j.wrap(blk + 1)
		if be.Uint32(b) != jbdMagic || be.Uint32(b[8:]) != next {
			break
		}
		switch be.Uint32(b[4:]) {
		case jbdDescriptor:
			tags, err := j.tags(b)
			if err != nil {
				if kind == passScan {
					return next, nil // a torn descriptor ends the log
				}
				return 0, err
			}
			for _, t := range tags {
				if kind == passReplay {
					if err := j.replayTag(t, blk, next, revoked, overlay[0]); err != nil {
						return 0, err
					}
				}
				blk = j.wrap(blk + 1)
			}
			visited += uint32(len(tags))
		case jbdCommit:
			if kind == passScan && !j.commitOK(b) {
				return next, nil
			}
			next++
		case jbdRevoke:
			if kind == passRevoke {
				if err := j.revokes(b, next, revoked); err != nil {
					return 0, err
				}
			}
		default:
			return next, nil
		}
	}
	return next, nil
}

type jtag struct {
	blk   uint64
	flags uint32
}

// tags decodes the block tags of a descriptor block.
func (j *journal) tags(b []byte) ([]jtag, error) {
	be := binary.BigEndian
	size := len(b)
	if j.csum {
		size -= 4
	}
	var out []jtag
	for off := 12; off+j.tagBytes <= size; {
		t := jtag{blk: uint64(be.Uint32(b[off:]))}
		if j.incompat&jbdFeatCsumV3 != 0 {
			t.flags = be.Uint32(b[off+4:])
			if j.incompat&jbdFeat64bit != 0 {
				t.blk |= uint64(be.Uint32(b[off+8:])) << 32
			}
		} else {
			t.flags = uint32(be.Uint16(b[off+6:]))
			if j.incompat&jbdFeat64bit != 0 {
				t.blk |= uint64(be.Uint32(b[off+8:])) << 32
			}
		}
		off += j.tagBytes
		if t.flags&jbdFlagSameUUID == 0 {
			off += 16
		}
		out = append(out, t)
		if t.flags&jbdFlagLastTag != 0 {
			return out, nil
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ext: journal descriptor without tags: %w", vfs.ErrMalformed)
	}
	return out, nil
}

func (j *journal) replayTag(t jtag, at uint32, tid uint32, revoked map[uint64]uint32, overlay map[uint64]overlayBlock) error {
	if r, ok := revoked[t.blk]; ok && tidGEQ(r, tid) {
		return nil
	}
	if t.blk >= j.f.sb.blocksCount {
		return fmt.Errorf("ext: journal: transaction %d writes block %d beyond the volume: %w", tid, t.blk, vfs.ErrMalformed)
	}
	p, err := j.phys(at)
	if err != nil {
		return err
	}
	overlay[t.blk] = overlayBlock{phys: p, escaped: t.flags&jbdFlagEscape != 0}
	return nil
}

// commitOK verifies a commit block's checksum (journal checksum v2/v3).
func (j *journal) commitOK(b []byte) bool {
	if !j.csum {
		return true
	}
	want := binary.BigEndian.Uint32(b[16:])
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint32(c[16:], 0)
	return crc32c(j.seed, c) == want
}

// revokes records the blocks a revoke block lists.
func (j *journal) revokes(b []byte, tid uint32, revoked map[uint64]uint32) error {
	be := binary.BigEndian
	count := int(be.Uint32(b[12:]))
	limit := len(b)
	if j.csum {
		limit -= 4
	}
	if count < 16 || count > limit {
		return fmt.Errorf("ext: journal revoke block of %d bytes: %w", count, vfs.ErrMalformed)
	}
	rec := 4
	if j.incompat&jbdFeat64bit != 0 {
		rec = 8
	}
	for off := 16; off+rec <= count; off += rec {
		var blk uint64
		if rec == 8 {
			blk = be.Uint64(b[off:])
		} else {
			blk = uint64(be.Uint32(b[off:]))
		}
		if old, ok := revoked[blk]; !ok || tidGEQ(tid, old) {
			revoked[blk] = tid
		}
		if len(revoked) > maxRevoked {
			return fmt.Errorf("ext: journal revokes more than %d blocks: %w", maxRevoked, vfs.ErrMalformed)
		}
	}
	return nil
}
