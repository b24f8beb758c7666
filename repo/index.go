package repo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// index is the badger database in REPO/index mapping blob IDs to pack
// locations. It is derived data: every fact in it is also in a pack
// trailer, and `cairn repair index` rebuilds it from the packs alone.
//
// Keys and values (integers little-endian):
//
//	'b' id(32)   -> pack(16) offset(4) length(4) type(1)   one per blob
//	'p' pack(16) -> size(8) blobs(4)                        one per merged pack
type index struct {
	db       *badger.DB
	readOnly bool

	// Read transactions of a read-only index, kept for reuse: starting one
	// takes a lock in badger's oracle and a round trip to its watermark
	// goroutine, which backup workers doing a lookup per block queue on. A
	// read-only index never changes, so an old transaction sees what a new
	// one would.
	txMu sync.Mutex
	txns []*badger.Txn
}

const (
	keyBlob = 'b'
	keyPack = 'p'
)

type packRecord struct {
	Size  int64
	Blobs uint32
}

// errIndexBusy: another process holds the index in a conflicting mode.
var errIndexBusy = errors.New("index busy")

func openIndex(dir string, readOnly bool) (*index, error) {
	opts := badger.DefaultOptions(dir).
		WithLogger(nil).
		WithReadOnly(readOnly).
		WithMemTableSize(memTableSize(readOnly)).
		WithNumMemtables(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithValueThreshold(1 << 10). // values are 25 bytes: keep them in the LSM tree
		WithValueLogFileSize(16 << 20).
		WithNumCompactors(2).
		WithNumVersionsToKeep(1).
		WithDetectConflicts(false)
	db, err := openBadger(opts)
	if err != nil && readOnly && !lockedByOther(err) && hasManifest(dir) {
		// A writer killed mid-write can leave files (an empty value log or
		// memtable) that only a read-write open repairs, and a read-only
		// open refuses to: repair them once, then open read-only again.
		if rw, rwErr := openBadger(opts.WithReadOnly(false)); rwErr == nil {
			rw.Close()
			db, err = badger.Open(opts)
		}
	}
	if err != nil {
		if lockedByOther(err) {
			return nil, fmt.Errorf("%w: %v", errIndexBusy, err)
		}
		return nil, fmt.Errorf("open index %s: %w", dir, err)
	}
	return &index{db: db, readOnly: readOnly}, nil
}

// openBadger opens the index, retrying a read-write open once where a
// process killed while badger created a memtable file left it empty: the
// failed open sizes it and a second open succeeds (dgraph-io/badger#2207).
func openBadger(opts badger.Options) (*badger.DB, error) {
	db, err := badger.Open(opts)
	if err != nil && !opts.ReadOnly && strings.Contains(err.Error(), "while opening memtables") {
		db, err = badger.Open(opts)
	}
	return db, err
}

// hasManifest: dir holds a badger database (not a missing or deleted index,
// which a read-only open must report rather than create).
func hasManifest(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "MANIFEST"))
	return err == nil
}

// lockedByOther: badger's directory lock is held by another process.
func lockedByOther(err error) bool {
	return strings.Contains(err.Error(), "resource temporarily unavailable") || strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// openIndexWait retries while another process holds the index briefly.
func openIndexWait(dir string, readOnly bool, wait time.Duration) (*index, error) {
	deadline := time.Now().Add(wait)
	for {
		ix, err := openIndex(dir, readOnly)
		if err == nil || !errors.Is(err, errIndexBusy) || time.Now().After(deadline) {
			return ix, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (ix *index) close() error {
	if ix == nil || ix.db == nil {
		return nil
	}
	ix.txMu.Lock()
	for _, txn := range ix.txns {
		txn.Discard()
	}
	ix.txns = nil
	ix.txMu.Unlock()
	err := ix.db.Close()
	ix.db = nil
	return err
}

func blobKey(id ID) []byte    { return append([]byte{keyBlob}, id[:]...) }
func packKey(p PackID) []byte { return append([]byte{keyPack}, p[:]...) }

func encodeIndexValue(e packEntry) []byte {
	v := make([]byte, 25)
	copy(v, e.Pack[:])
	binary.LittleEndian.PutUint32(v[16:], e.Offset)
	binary.LittleEndian.PutUint32(v[20:], e.Length)
	v[24] = byte(e.Type)
	return v
}

func decodeIndexValue(id ID, v []byte) (packEntry, error) {
	if len(v) != 25 || (BlobType(v[24]) != BlobData && BlobType(v[24]) != BlobTable) {
		return packEntry{}, fmt.Errorf("%w: index record for %s", ErrCorrupt, id.Short())
	}
	var e packEntry
	e.ID = id
	copy(e.Pack[:], v[:16])
	e.Offset = binary.LittleEndian.Uint32(v[16:])
	e.Length = binary.LittleEndian.Uint32(v[20:])
	e.Type = BlobType(v[24])
	return e, nil
}

// view runs fn in a read transaction: a reused one on a read-only index.
func (ix *index) view(fn func(txn *badger.Txn) error) error {
	if !ix.readOnly {
		return ix.db.View(fn)
	}
	ix.txMu.Lock()
	var txn *badger.Txn
	if n := len(ix.txns); n > 0 {
		txn, ix.txns = ix.txns[n-1], ix.txns[:n-1]
	}
	ix.txMu.Unlock()
	if txn == nil {
		txn = ix.db.NewTransaction(false)
	}
	err := fn(txn)
	ix.txMu.Lock()
	ix.txns = append(ix.txns, txn)
	ix.txMu.Unlock()
	return err
}

// lookup returns the index record of blob id.
func (ix *index) lookup(id ID) (packEntry, bool, error) {
	var e packEntry
	found := false
	err := ix.lookupMany([]ID{id}, func(_ int, f packEntry) { e, found = f, true })
	return e, found, err
}

// lookupMany looks up every id in one read transaction and calls found for
// each id the index holds.
func (ix *index) lookupMany(ids []ID, found func(i int, e packEntry)) error {
	return ix.view(func(txn *badger.Txn) error {
		for i, id := range ids {
			item, err := txn.Get(blobKey(id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if err := item.Value(func(v []byte) error {
				e, derr := decodeIndexValue(id, v)
				if derr == nil {
					found(i, e)
				}
				return derr
			}); err != nil {
				return err
			}
		}
		return nil
	})
}

// packs returns every merged pack.
func (ix *index) packs() (map[PackID]packRecord, error) {
	out := make(map[PackID]packRecord)
	err := ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{keyPack}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 17 {
				return fmt.Errorf("%w: index pack key of %d bytes", ErrCorrupt, len(k))
			}
			var p PackID
			copy(p[:], k[1:])
			err := it.Item().Value(func(v []byte) error {
				if len(v) != 12 {
					return fmt.Errorf("%w: index record for pack %s", ErrCorrupt, p)
				}
				out[p] = packRecord{Size: int64(binary.LittleEndian.Uint64(v)), Blobs: binary.LittleEndian.Uint32(v[8:])}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// forEachBlob calls fn for every blob record.
func (ix *index) forEachBlob(fn func(packEntry) error) error {
	return ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{keyBlob}, PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			if len(k) != 33 {
				return fmt.Errorf("%w: index blob key of %d bytes", ErrCorrupt, len(k))
			}
			var id ID
			copy(id[:], k[1:])
			var e packEntry
			if err := it.Item().Value(func(v []byte) (err error) { e, err = decodeIndexValue(id, v); return }); err != nil {
				return err
			}
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// packBatch records packs and their blobs in one badger write batch: a
// merge of many packs costs one commit, not one per pack.
type packBatch struct{ wb *badger.WriteBatch }

func (ix *index) newPackBatch() *packBatch { return &packBatch{wb: ix.db.NewWriteBatch()} }

// add queues the records of one pack.
func (b *packBatch) add(id PackID, entries []packEntry, size int64) error {
	for _, e := range entries {
		if err := b.wb.Set(blobKey(e.ID), encodeIndexValue(e)); err != nil {
			return err
		}
	}
	v := make([]byte, 12)
	binary.LittleEndian.PutUint64(v, uint64(size))
	binary.LittleEndian.PutUint32(v[8:], uint32(len(entries)))
	return b.wb.Set(packKey(id), v)
}

// flush commits everything queued; cancel drops what is not committed.
func (b *packBatch) flush() error { return b.wb.Flush() }
func (b *packBatch) cancel()      { b.wb.Cancel() }

// removePacks drops the records of packs and of every blob whose record
// points into them; replace supplies another live copy of a blob, if any.
func (ix *index) removePacks(gone map[PackID]bool, replace func(ID) (packEntry, bool)) error {
	var dropped []packEntry
	err := ix.forEachBlob(func(e packEntry) error {
		if gone[e.Pack] {
			dropped = append(dropped, e)
		}
		return nil
	})
	if err != nil {
		return err
	}
	wb := ix.db.NewWriteBatch()
	defer wb.Cancel()
	for _, e := range dropped {
		if alt, ok := replace(e.ID); ok && !gone[alt.Pack] {
			err = wb.Set(blobKey(e.ID), encodeIndexValue(alt))
		} else {
			err = wb.Delete(blobKey(e.ID))
		}
		if err != nil {
			return err
		}
	}
	for p := range gone {
		if err := wb.Delete(packKey(p)); err != nil {
			return err
		}
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	return ix.db.Sync()
}

func isBusy(err error) bool { return errors.Is(err, errIndexBusy) }

// memTableSize: a writer's memtable holds the records of a few GiB of new
// data (about 100 bytes per 64 KiB block), so merging one backup's packs
// neither fills it midway nor stalls on a flush; the whole arena is cleared
// at every open, so a larger one costs more than it saves (merge of a
// 3.4 GB first backup: 8 MiB 0.33-0.47 s, 16 MiB 0.29-0.31 s, 64 MiB
// 0.35-0.47 s). Readers never write.
func memTableSize(readOnly bool) int64 {
	if readOnly {
		return 8 << 20
	}
	return 16 << 20
}
