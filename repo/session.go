package repo

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Session writes new blobs and finally one restore point. Any number of
// sessions, in any number of processes, may write into one repository at
// once; see doc.go ("Concurrency") for how they share the index.
//
// A session must end with Commit or Abort. Until Commit returns, the
// restore point does not exist; blobs stored so far stay in the repository
// (in complete, durable packs) and the next session reuses them.
type Session struct {
	r       *Repository
	pw      *packWriter
	ix      *index              // read-only view of the merged index
	overlay map[ID]Location     // blobs of packs on disk but not merged
	live    map[PackID]struct{} // packs on disk when the session started
	shards  [64]seenShard       // blobs this session stored
	comp    sync.Pool

	newBlobs, newBytes, storedBytes atomic.Int64
}

type seenShard struct {
	mu       sync.Mutex
	m        map[ID]Location
	inflight map[ID]chan struct{} // blobs being written; closed when done
}

// NewSession starts a writing session. The caller must hold a lock.
func (r *Repository) NewSession() (*Session, error) {
	if _, _, err := r.MergeIndex(); err != nil {
		return nil, err
	}
	ix, err := openIndexWait(r.indexDir(), true, time.Minute)
	if err != nil {
		return nil, fmt.Errorf("open index: %w", err)
	}
	s := &Session{r: r, pw: newPackWriter(r), ix: ix, overlay: make(map[ID]Location), live: make(map[PackID]struct{})}
	s.comp.New = func() any { return newCompressor() }
	for i := range s.shards {
		s.shards[i].m = make(map[ID]Location)
		s.shards[i].inflight = make(map[ID]chan struct{})
	}
	if err := s.loadUnmerged(); err != nil {
		ix.close()
		return nil, err
	}
	return s, nil
}

// loadUnmerged reads the trailers of packs the index does not know yet
// (written by sessions that could not merge them).
func (s *Session) loadUnmerged() error {
	disk, err := s.r.packsOnDisk()
	if err != nil {
		return err
	}
	known, err := s.ix.packs()
	if err != nil {
		return err
	}
	for id := range disk {
		s.live[id] = struct{}{}
		if _, ok := known[id]; ok {
			continue
		}
		entries, _, err := s.r.loadTrailer(id)
		if err != nil {
			continue // damaged pack: don't deduplicate against it
		}
		for _, e := range entries {
			s.overlay[e.ID] = e.Location
		}
	}
	return nil
}

// Live reports whether loc is in a pack that existed when the session
// started, so a block recorded there by an earlier restore point can be
// referenced again without a lookup.
func (s *Session) Live(loc Location) bool {
	_, ok := s.live[loc.Pack]
	return ok
}

// Find returns where blob id is stored, if the repository has it.
func (s *Session) Find(id ID) (Location, bool, error) {
	sh := &s.shards[id[0]&63]
	sh.mu.Lock()
	loc, ok := sh.m[id]
	sh.mu.Unlock()
	if ok {
		return loc, true, nil
	}
	if loc, ok := s.overlay[id]; ok {
		return loc, true, nil
	}
	e, ok, err := s.ix.lookup(id)
	if err != nil {
		return Location{}, false, fmt.Errorf("index lookup: %w", err)
	}
	if ok && s.Live(e.Location) {
		return e.Location, true, nil
	}
	return Location{}, false, nil
}

// FindMany is Find for many blobs at once, with one index transaction:
// locs[i] and ok[i] receive the answer for ids[i].
func (s *Session) FindMany(ids []ID, locs []Location, ok []bool) error {
	var ask []ID
	var at []int
	for i, id := range ids {
		sh := &s.shards[id[0]&63]
		sh.mu.Lock()
		locs[i], ok[i] = sh.m[id]
		sh.mu.Unlock()
		if !ok[i] {
			locs[i], ok[i] = s.overlay[id]
		}
		if !ok[i] {
			ask, at = append(ask, id), append(at, i)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	err := s.ix.lookupMany(ask, func(j int, e packEntry) {
		if s.Live(e.Location) {
			locs[at[j]], ok[at[j]] = e.Location, true
		}
	})
	if err != nil {
		return fmt.Errorf("index lookup: %w", err)
	}
	return nil
}

// Store stores data as blob id unless the repository already has it. It
// reports whether the blob was new (then loc.Length is its stored size).
func (s *Session) Store(t BlobType, id ID, data []byte) (loc Location, isNew bool, err error) {
	if loc, ok, err := s.Find(id); ok || err != nil {
		return loc, false, err
	}
	return s.StoreMissing(t, id, data)
}

// StoreMissing is Store for a blob that Find or FindMany of this session
// has just reported missing: it skips the index lookup. A blob that another
// worker stored meanwhile is still stored only once.
func (s *Session) StoreMissing(t BlobType, id ID, data []byte) (loc Location, isNew bool, err error) {
	comp := s.comp.Get().(*compressor)
	bp := plainPool.Get().(*[]byte)
	stored := s.r.codec.encode((*bp)[:0], t, id, data, comp)
	s.comp.Put(comp)
	defer func() { *bp = stored[:0]; plainPool.Put(bp) }() // add has written it

	// The shard is locked only to check and record, not while the pack
	// writer copies the blob: a worker preempted there would stall every
	// worker whose blob falls in the shard. A blob another worker is
	// storing right now is waited for, so each blob is stored once.
	sh := &s.shards[id[0]&63]
	for {
		sh.mu.Lock()
		if loc, ok := sh.m[id]; ok { // another worker stored it meanwhile
			sh.mu.Unlock()
			return loc, false, nil
		}
		busy, ok := sh.inflight[id]
		if !ok {
			break
		}
		sh.mu.Unlock()
		<-busy
	}
	done := make(chan struct{})
	sh.inflight[id] = done
	sh.mu.Unlock()

	loc, err = s.pw.add(t, id, stored)
	sh.mu.Lock()
	delete(sh.inflight, id)
	if err == nil {
		sh.m[id] = loc
	}
	sh.mu.Unlock()
	close(done)
	if err != nil {
		return Location{}, false, err
	}
	s.newBlobs.Add(1)
	s.newBytes.Add(int64(len(data)))
	s.storedBytes.Add(int64(len(stored)))
	return loc, true, nil
}

// StoreTable stores a block table and returns its reference.
func (s *Session) StoreTable(index uint32, entries []BlockEntry) (TableRef, error) {
	raw := encodeTable(entries)
	id := s.r.codec.hasher.Sum(raw)
	loc, _, err := s.Store(BlobTable, id, raw)
	if err != nil {
		return TableRef{}, err
	}
	return TableRef{Index: index, ID: id, Pack: loc.Pack, Offset: loc.Offset, Length: loc.Length}, nil
}

// Stored returns what the session has added so far: blobs, their
// uncompressed bytes, and bytes written to packs.
func (s *Session) Stored() (blobs, raw, stored int64) {
	return s.newBlobs.Load(), s.newBytes.Load(), s.storedBytes.Load()
}

// Commit makes every pack durable, then writes p atomically. p.ID, p.Time,
// p.Version and p.Host are filled in when empty.
func (s *Session) Commit(p *RestorePoint) error {
	if err := s.pw.flush(); err != nil {
		s.Abort()
		return err
	}
	if p.ID == "" {
		p.ID = newPointID()
	}
	if p.Time.IsZero() {
		p.Time = time.Now().UTC()
	}
	if p.Host == "" {
		p.Host, _ = os.Hostname()
	}
	p.Version = FormatVersion
	err := s.r.writePoint(p)
	s.ix.close()
	if err != nil {
		return fmt.Errorf("write restore point: %w", err)
	}
	// Best effort: merge our packs now; otherwise the next writer does.
	_, _, _ = s.r.mergeIndex(s.pw.durable())
	return nil
}

// Abort ends the session without a restore point.
func (s *Session) Abort() {
	s.pw.abort()
	s.ix.close()
}
