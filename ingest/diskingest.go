package ingest

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/cairn-backup/cairn/ingest/source"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/directio"
)

// batchBlocks is how many consecutive blocks one worker reads at once.
const batchBlocks = 16

// tableJob collects the entries of one block table while workers fill it.
type tableJob struct {
	index   uint32
	entries []repo.BlockEntry
	pending sync.WaitGroup
	reuse   *repo.TableRef // an unchanged table of the parent, stored as is
}

// batch is a run of consecutive data blocks inside one table.
type batch struct {
	table    *tableJob
	first, n int64 // first block (disk-wide) and count
}

// diskIngest holds the state of one disk's backup.
type diskIngest struct {
	r      *repo.Repository
	sess   *repo.Session
	src    source.Source
	prev   *repo.DiskReader // same disk in the parent restore point, or nil
	prog   *Progress
	bs, ts int64
	size   int64
	zero   []byte

	bytesRead, dataBlocks, newBlocks, newBytes, stored atomic.Int64
}

// ingestDisk cuts src into blocks, stores the ones the repository lacks
// and returns the disk's description with its block tables.
func ingestDisk(ctx context.Context, r *repo.Repository, sess *repo.Session, src source.Source, prev *repo.DiskReader, o BackupOptions) (*repo.Disk, error) {
	cfg := r.Config()
	di := &diskIngest{
		r: r, sess: sess, src: src, prog: o.Progress,
		bs: int64(cfg.BlockSize), ts: int64(cfg.TableSize), size: src.Size(),
		zero: make([]byte, cfg.BlockSize),
	}
	if prev != nil && prev.Disk().BlockSize == cfg.BlockSize && prev.Disk().TableSize == cfg.TableSize {
		di.prev = prev
	}
	return di.run(ctx, o, di.produce)
}

// run is the pipeline: produce emits batches and tables, workers fill the
// tables, the finalizer stores each table once its blocks are done.
func (di *diskIngest) run(ctx context.Context, o BackupOptions, produce func(context.Context, chan<- batch, chan<- *tableJob) error) (*repo.Disk, error) {
	sess := di.sess
	workers := o.Workers
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	g, ctx := errgroup.WithContext(ctx)
	batches := make(chan batch, workers*2)
	tables := make(chan *tableJob, 8)
	var refs []repo.TableRef
	g.Go(func() error { // producer: walk the data extents in order
		defer close(batches)
		defer close(tables)
		return produce(ctx, batches, tables)
	})
	for i := 0; i < workers; i++ {
		g.Go(func() error { return di.work(ctx, batches) })
	}
	g.Go(func() error { // finalizer: store each table once its blocks are done
		for t := range tables {
			t.pending.Wait()
			if ctx.Err() != nil {
				continue // drain
			}
			if t.reuse != nil {
				refs = append(refs, *t.reuse)
				continue
			}
			ref, err := sess.StoreTable(t.index, t.entries)
			if err != nil {
				return err
			}
			refs = append(refs, ref)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return &repo.Disk{
		Size: di.size, BlockSize: int(di.bs), TableSize: int(di.ts),
		Format: di.src.Format(), Tables: refs,
		Stats: repo.DiskStats{
			BytesRead: di.bytesRead.Load(), DataBlocks: di.dataBlocks.Load(),
			NewBlocks: di.newBlocks.Load(), NewBytes: di.newBytes.Load(),
			StoredBytes: di.stored.Load(),
		},
	}, nil
}

// produce walks the source's data extents in ascending order and emits
// batches of data blocks, and each block table (in order) as it is opened.
func (di *diskIngest) produce(ctx context.Context, batches chan<- batch, tables chan<- *tableJob) error {
	var cur *tableJob
	next := int64(0) // first block not yet emitted
	closeTable := func() {
		if cur != nil {
			cur.pending.Done() // the producer's own hold on the table
			cur = nil
		}
	}
	defer closeTable()
	emit := func(first, last int64) error { // blocks [first, last]
		for b := first; b <= last; {
			t := b / di.ts
			if cur == nil || int64(cur.index) != t {
				closeTable()
				cur = &tableJob{index: uint32(t), entries: make([]repo.BlockEntry, di.ts)}
				cur.pending.Add(1)
				select {
				case tables <- cur:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			n := min(batchBlocks, last-b+1, (t+1)*di.ts-b)
			cur.pending.Add(1)
			select {
			case batches <- batch{table: cur, first: b, n: n}:
			case <-ctx.Done():
				cur.pending.Done()
				return ctx.Err()
			}
			b += n
		}
		return nil
	}
	err := di.src.Extents(func(off, length int64) error {
		if length <= 0 {
			return nil
		}
		first := max(off/di.bs, next)
		last := (min(off+length, di.size) - 1) / di.bs
		if last < first {
			return nil
		}
		di.prog.Done.Add((first - next) * di.bs) // the hole before this extent
		next = last + 1
		return emit(first, last)
	})
	if err != nil {
		return fmt.Errorf("read allocation map: %w", err)
	}
	if tail := di.size - next*di.bs; tail > 0 {
		di.prog.Done.Add(tail)
	}
	return nil
}

// work reads batches and stores their blocks. After a failure it keeps
// draining the channel so that no table waits for a batch forever.
func (di *diskIngest) work(ctx context.Context, batches <-chan batch) error {
	buf := directio.Buffer(int(batchBlocks * di.bs)) // aligned: sources may read it with O_DIRECT
	var err error
	for bt := range batches {
		if err == nil {
			if err = ctx.Err(); err == nil {
				err = di.doBatch(bt, buf)
			}
		}
		bt.table.pending.Done()
	}
	return err
}

func (di *diskIngest) doBatch(bt batch, buf []byte) error {
	off := bt.first * di.bs
	n := min(bt.n*di.bs, di.size-off)
	data := buf[:n]
	got, err := di.src.ReadAt(data, off)
	if int64(got) < n {
		if err == nil {
			err = fmt.Errorf("short read")
		}
		return fmt.Errorf("read at offset %d: %w (is the image truncated?)", off+int64(got), err)
	}
	di.bytesRead.Add(n)
	di.prog.Read.Add(n)
	var prevTable []repo.BlockEntry
	if di.prev != nil {
		prevTable, _ = di.prev.Table(bt.table.index) // unreadable hints are only a lost shortcut
	}
	// Hash the batch's data blocks, reuse what the parent has at the same
	// place, look the rest up in one index transaction, store what is new.
	var ids [batchBlocks]repo.ID
	var want [batchBlocks]int64 // batch positions that need a lookup
	nwant := 0
	for i := int64(0); i < bt.n; i++ {
		b := bt.first + i
		blk := data[i*di.bs : min((i+1)*di.bs, n)]
		if bytes.Equal(blk, di.zero[:len(blk)]) {
			bt.table.entries[b%di.ts] = repo.BlockEntry{} // may hold the parent's entry
			continue
		}
		di.dataBlocks.Add(1)
		id := di.r.Hasher().Sum(blk)
		if prevTable != nil {
			if pe := prevTable[b%di.ts]; pe.ID == id && di.sess.Live(pe.Location) {
				bt.table.entries[b%di.ts] = pe
				continue
			}
		}
		ids[nwant], want[nwant] = id, i
		nwant++
	}
	var locs [batchBlocks]repo.Location
	var found [batchBlocks]bool
	if err := di.sess.FindMany(ids[:nwant], locs[:nwant], found[:nwant]); err != nil {
		return err
	}
	for k, i := range want[:nwant] {
		b := bt.first + i
		loc, isNew := locs[k], false
		if !found[k] {
			blk := data[i*di.bs : min((i+1)*di.bs, n)]
			var err error
			if loc, isNew, err = di.sess.StoreMissing(repo.BlobData, ids[k], blk); err != nil {
				return err
			}
		}
		bt.table.entries[b%di.ts] = repo.BlockEntry{ID: ids[k], Location: loc}
		if isNew {
			size := min(di.bs, n-i*di.bs)
			di.newBlocks.Add(1)
			di.newBytes.Add(size)
			di.stored.Add(int64(loc.Length))
			di.prog.NewBytes.Add(size)
			di.prog.Stored.Add(int64(loc.Length))
		}
	}
	di.prog.Done.Add(n)
	return nil
}
