package tree

import (
	"container/list"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/cairn-backup/cairn/repo"
)

// How reads work
//
// Each (restore point, disk) being read has a source: one repo.DiskReader
// (with its cache of decoded blocks) and the set of blocks being loaded
// right now. Sources live in a small LRU pool, so that the memory of the
// daemon is bounded by the cache budget however many files are open: a
// handle looks its source up on every read rather than holding it.
//
// A handle that reads sequentially (each read starting near where the
// previous one ended) prefetches the blocks after the read into the
// DiskReader cache with a pool of workers, in a window that doubles up to
// a limit, so that decoding (hash check, decompression, decryption) runs
// in parallel and ahead of the reader. Blocks a read needs that are queued
// but not started are loaded by the reader itself; blocks a worker is
// loading are waited for, so no block is decoded twice.

type sourceKey struct{ point, disk string }

type source struct {
	key  sourceKey
	dr   *repo.DiskReader
	bs   int64
	size int64
	elem *list.Element

	mu       sync.Mutex
	inflight map[int64]*fetch
}

// fetch is a block queued for or being loaded.
type fetch struct {
	claimed atomic.Bool // set by whoever loads it
	done    chan struct{}
}

type sourcePool struct {
	r          *repo.Repository
	maxOpen    int
	cacheBytes int64 // per source

	mu   sync.Mutex
	m    map[sourceKey]*source
	lru  *list.List
	jobs chan job
	quit chan struct{}
	wg   sync.WaitGroup
}

type job struct {
	src *source
	b   int64
	f   *fetch
}

const (
	// perSourceCache is the cache each open disk gets; the budget decides
	// how many disks stay open.
	perSourceCache = 64 << 20
	minOpen        = 4
)

func newSourcePool(r *repo.Repository, budget int64, workers int) *sourcePool {
	maxOpen := max(minOpen, int(budget/perSourceCache))
	p := &sourcePool{
		r: r, maxOpen: maxOpen, cacheBytes: max(budget/int64(maxOpen), 4<<20),
		m: make(map[sourceKey]*source), lru: list.New(), quit: make(chan struct{}),
	}
	if workers == 0 {
		workers = min(max(4, 4*runtime.NumCPU()), 32)
	}
	if workers > 0 {
		p.jobs = make(chan job, 4096)
		for i := 0; i < workers; i++ {
			p.wg.Add(1)
			go p.work()
		}
	}
	return p
}

func (p *sourcePool) close() {
	p.mu.Lock()
	select {
	case <-p.quit:
	default:
		close(p.quit)
	}
	p.m = make(map[sourceKey]*source)
	p.lru.Init()
	p.mu.Unlock()
	p.wg.Wait()
}

// get returns the source of disk d of restore point pt, opening it (and
// closing the least recently used one) if needed.
func (p *sourcePool) get(pt *repo.RestorePoint, d *repo.Disk) (*source, error) {
	k := sourceKey{point: pt.ID, disk: d.Name}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.m[k]; s != nil {
		p.lru.MoveToFront(s.elem)
		return s, nil
	}
	dr, err := p.r.OpenDisk(pt, d.Name, p.cacheBytes)
	if err != nil {
		return nil, err
	}
	s := &source{key: k, dr: dr, bs: int64(d.BlockSize), size: d.Size, inflight: make(map[int64]*fetch)}
	s.elem = p.lru.PushFront(s)
	p.m[k] = s
	for p.lru.Len() > p.maxOpen {
		old := p.lru.Remove(p.lru.Back()).(*source)
		delete(p.m, old.key) // in-flight users finish with it; then it is garbage
	}
	return s, nil
}

// forget drops the sources of a restore point that no longer exists.
func (p *sourcePool) forget(pointID string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, s := range p.m {
		if k.point == pointID {
			p.lru.Remove(s.elem)
			delete(p.m, k)
		}
	}
}

func (p *sourcePool) work() {
	defer p.wg.Done()
	for {
		select {
		case <-p.quit:
			return
		case j := <-p.jobs:
			if j.f.claimed.CompareAndSwap(false, true) {
				j.src.load(j.b, j.f)
			}
		}
	}
}

// load reads block b into the DiskReader cache. Errors are dropped: the
// read that needs the block reads it again and reports them.
func (s *source) load(b int64, f *fetch) {
	s.dr.Prefetch(b)
	s.mu.Lock()
	delete(s.inflight, b)
	s.mu.Unlock()
	close(f.done)
}

// prefetch queues blocks [from, to) that are not being loaded already.
// A full queue drops the rest: prefetching is only a hint.
func (p *sourcePool) prefetch(s *source, from, to int64) {
	if p.jobs == nil {
		return
	}
	for b := from; b < to; b++ {
		if e, err := s.dr.Entry(b); err == nil && e.IsZero() {
			continue // a hole: nothing to load
		}
		s.mu.Lock()
		if s.inflight[b] != nil {
			s.mu.Unlock()
			continue
		}
		f := &fetch{done: make(chan struct{})}
		s.inflight[b] = f
		s.mu.Unlock()
		select {
		case p.jobs <- job{s, b, f}:
		default:
			f.claimed.Store(true)
			s.mu.Lock()
			delete(s.inflight, b)
			s.mu.Unlock()
			close(f.done)
			return
		}
	}
}

// await makes sure block b is not being loaded: a queued block is loaded
// here, a block a worker is loading is waited for.
func (s *source) await(b int64) {
	s.mu.Lock()
	f := s.inflight[b]
	s.mu.Unlock()
	if f == nil {
		return
	}
	if f.claimed.CompareAndSwap(false, true) {
		s.load(b, f)
		return
	}
	<-f.done
}
