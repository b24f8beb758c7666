package repo

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cairn-backup/cairn/repo/directio"
)

// packWriter appends sealed blobs to packs. A pack is written to REPO/tmp,
// finished with its trailer, fsynced and only then renamed into REPO/packs:
// a pack that is visible is complete and durable. Finishing runs in the
// background; flush waits for it. Safe for concurrent use.
//
// A pack is assembled in aligned chunks. Each full chunk goes to the pack's
// own writer goroutine, which writes the chunks in order with direct I/O
// (package directio): adding a blob costs one copy into the chunk; workers
// neither copy into the page cache nor wait for the disk, unless the disk
// falls behind by more than a few chunks.
type packWriter struct {
	r        *Repository
	mu       sync.Mutex
	cur      *openPack
	finishWG sync.WaitGroup
	sem      chan struct{} // bounds packs being fsynced at once
	pending  chan struct{} // bounds packs finished but not yet durable
	noDirect atomic.Bool   // the file system refused a direct write
	errMu    sync.Mutex
	err      error
	doneMu   sync.Mutex
	done     map[PackID]packFacts // durable packs, for the index merge
}

// packFacts is what the index records of a pack: its blobs and size.
type packFacts struct {
	entries []packEntry
	size    int64
}

// packChunk is the size of the buffers a pack is assembled and written in,
// a multiple of directio.Align.
const packChunk = 4 << 20

var chunkPool = sync.Pool{New: func() any { b := directio.Buffer(packChunk); return &b }}

// chunkWrite is a full chunk and where it goes in the pack.
type chunkWrite struct {
	buf *[]byte
	off int64
}

// queuedChunks is how many full chunks of a pack may wait for its writer.
const queuedChunks = 2

type openPack struct {
	id      PackID
	f       *os.File // ordinary handle: the last chunk, fallback writes, fsync
	direct  *os.File // O_DIRECT handle, or nil
	size    int64    // bytes appended
	buf     *[]byte  // the chunk being filled: bytes [written, size)
	written int64    // bytes handed to the writer; a multiple of packChunk
	queue   chan chunkWrite
	sends   sync.WaitGroup // full chunks not yet in the queue
	wrote   chan struct{}  // closed when the writer has written every chunk
	err     error          // the writer's first error; read after wrote
	entries []packEntry
}

func newPackWriter(r *Repository) *packWriter {
	return &packWriter{r: r, sem: make(chan struct{}, 4), pending: make(chan struct{}, 8)}
}

// add stores one sealed blob and returns its location. The location is
// readable once flush has returned without error.
func (w *packWriter) add(t BlobType, id ID, stored []byte) (Location, error) {
	if err := w.firstErr(); err != nil {
		return Location{}, err
	}
	w.mu.Lock()
	if w.cur == nil {
		p, err := w.create()
		if err != nil {
			w.mu.Unlock()
			return Location{}, err
		}
		w.cur = p
	}
	p := w.cur
	loc := Location{Pack: p.id, Offset: uint32(p.size), Length: uint32(len(stored))}
	full := p.append(stored)
	p.entries = append(p.entries, packEntry{Type: t, ID: id, Location: loc})
	if p.size >= w.r.cfg.PackSize {
		w.cur = nil
		w.finish(p)
	}
	w.mu.Unlock()
	p.queueChunks(full) // outside the lock: it waits when the disk falls behind
	return loc, nil
}

func (w *packWriter) create() (*openPack, error) {
	var id PackID
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(w.r.dir, "tmp", id.String()+packExt), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create pack: %w", err)
	}
	p := &openPack{id: id, f: f, buf: chunkPool.Get().(*[]byte),
		queue: make(chan chunkWrite, queuedChunks), wrote: make(chan struct{})}
	*p.buf = (*p.buf)[:0]
	if !w.noDirect.Load() {
		p.direct = directio.OpenWriter(f.Name())
	}
	go w.writeChunks(p)
	p.append([]byte(packMagic)) // never fills a chunk: nothing to queue
	return p, nil
}

// append copies b after the pack's bytes and returns the chunks it filled,
// which the caller must pass to queueChunks.
func (p *openPack) append(b []byte) []chunkWrite {
	var full []chunkWrite
	p.size += int64(len(b))
	for len(b) > 0 {
		buf := *p.buf
		n := copy(buf[len(buf):cap(buf)], b)
		*p.buf, b = buf[:len(buf)+n], b[n:]
		if len(*p.buf) == cap(*p.buf) {
			p.sends.Add(1)
			full = append(full, chunkWrite{buf: p.buf, off: p.written})
			p.written += packChunk
			p.buf = chunkPool.Get().(*[]byte)
			*p.buf = (*p.buf)[:0]
		}
	}
	return full
}

// queueChunks hands full chunks to the pack's writer.
func (p *openPack) queueChunks(full []chunkWrite) {
	for _, c := range full {
		p.queue <- c
		p.sends.Done()
	}
}

// closeQueue tells the writer that no chunk follows, once every full chunk
// is queued, and waits until it has written them.
func (p *openPack) closeQueue() {
	p.sends.Wait()
	close(p.queue)
	<-p.wrote
}

// writeChunks is the pack's writer: it writes queued chunks (nearly in
// order) until the queue is closed. After an error it drops the rest;
// finishPack reports it.
func (w *packWriter) writeChunks(p *openPack) {
	defer close(p.wrote)
	for c := range p.queue {
		if p.err == nil {
			p.err = w.writeAt(p, *c.buf, c.off)
		}
		chunkPool.Put(c.buf)
	}
}

// writeAt writes directly where it can, through the ordinary handle where
// the file system refuses direct I/O.
func (w *packWriter) writeAt(p *openPack, b []byte, off int64) error {
	if p.direct != nil && !w.noDirect.Load() && off%directio.Align == 0 && len(b)%directio.Align == 0 && directio.Aligned(b) {
		_, err := p.direct.WriteAt(b, off)
		if !directio.Unsupported(err) {
			if err != nil {
				return fmt.Errorf("write pack %s: %w", p.f.Name(), err)
			}
			return nil
		}
		w.noDirect.Store(true)
	}
	if _, err := p.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("write pack %s: %w", p.f.Name(), err)
	}
	return nil
}

// finish seals the trailer and makes the pack durable in the background.
func (w *packWriter) finish(p *openPack) {
	w.finishWG.Add(1)
	w.pending <- struct{}{} // at most cap(pending) packs wait for the disk; then writers wait too
	go func() {
		w.sem <- struct{}{}
		defer func() { <-w.sem; <-w.pending; w.finishWG.Done() }()
		if err := w.finishPack(p); err != nil {
			w.setErr(err)
		}
	}()
}

// finishPack writes the trailer, waits for the pack's writer, fsyncs and
// renames the pack into place.
func (w *packWriter) finishPack(p *openPack) error {
	r := w.r
	sealed := r.codec.seal.sealMeta(nil, encodeTrailer(p.entries), trailerAAD(p.id))
	foot := make([]byte, 4, packFooterLen)
	binary.LittleEndian.PutUint32(foot, uint32(len(sealed)))
	foot = append(foot, packEndMagic...)
	p.queueChunks(p.append(append(sealed, foot...)))
	p.closeQueue()
	tmp := p.f.Name()
	err := p.err
	if err == nil {
		// The last, partial chunk goes through the ordinary handle: the
		// file ends where the pack ends, and it is one chunk in many.
		if _, werr := p.f.WriteAt(*p.buf, p.written); werr != nil {
			err = fmt.Errorf("write pack %s: %w", tmp, werr)
		}
	}
	chunkPool.Put(p.buf)
	p.buf = nil
	if err == nil {
		err = p.f.Sync()
	}
	if p.direct != nil {
		p.direct.Close()
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write pack %s: %w", tmp, err)
	}
	dst := packPath(r.dir, p.id)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	w.doneMu.Lock()
	if w.done == nil {
		w.done = make(map[PackID]packFacts)
	}
	w.done[p.id] = packFacts{entries: p.entries, size: p.size}
	w.doneMu.Unlock()
	return nil
}

// durable returns the packs this writer has made durable so far.
func (w *packWriter) durable() map[PackID]packFacts {
	w.doneMu.Lock()
	defer w.doneMu.Unlock()
	return maps.Clone(w.done)
}

// flush finishes the open pack and waits until every pack is durable.
func (w *packWriter) flush() error {
	w.mu.Lock()
	if p := w.cur; p != nil {
		w.cur = nil
		w.finish(p)
	}
	w.mu.Unlock()
	w.finishWG.Wait()
	return w.firstErr()
}

// abort drops the open pack; finished packs stay (they are harmless and
// the next backup reuses their blobs).
func (w *packWriter) abort() {
	w.mu.Lock()
	p := w.cur
	w.cur = nil
	w.mu.Unlock()
	if p != nil {
		p.closeQueue()
		if p.direct != nil {
			p.direct.Close()
		}
		p.f.Close()
		os.Remove(p.f.Name())
	}
	w.finishWG.Wait()
}

func (w *packWriter) setErr(err error) {
	w.errMu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.errMu.Unlock()
}

func (w *packWriter) firstErr() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}
