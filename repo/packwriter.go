package repo

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// packWriter appends sealed blobs to packs. A pack is written to REPO/tmp,
// finished with its trailer, fsynced and only then renamed into REPO/packs:
// a pack that is visible is complete and durable. Finishing runs in the
// background; flush waits for it. Safe for concurrent use.
type packWriter struct {
	r        *Repository
	mu       sync.Mutex
	cur      *openPack
	finishWG sync.WaitGroup
	sem      chan struct{} // bounds packs being fsynced at once
	pending  chan struct{} // bounds packs finished but not yet durable
	errMu    sync.Mutex
	err      error
}

type openPack struct {
	id      PackID
	f       *os.File
	size    int64
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
	defer w.mu.Unlock()
	if w.cur == nil {
		p, err := w.create()
		if err != nil {
			return Location{}, err
		}
		w.cur = p
	}
	p := w.cur
	loc := Location{Pack: p.id, Offset: uint32(p.size), Length: uint32(len(stored))}
	if _, err := p.f.Write(stored); err != nil {
		return Location{}, fmt.Errorf("write pack %s: %w", p.f.Name(), err)
	}
	p.size += int64(len(stored))
	p.entries = append(p.entries, packEntry{Type: t, ID: id, Location: loc})
	if p.size >= w.r.cfg.PackSize {
		w.cur = nil
		w.finish(p)
	}
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
	if _, err := f.Write([]byte(packMagic)); err != nil {
		f.Close()
		return nil, fmt.Errorf("write pack %s: %w", f.Name(), err)
	}
	return &openPack{id: id, f: f, size: int64(len(packMagic))}, nil
}

// finish seals the trailer and makes the pack durable in the background.
func (w *packWriter) finish(p *openPack) {
	w.finishWG.Add(1)
	w.pending <- struct{}{} // at most cap(pending) packs wait for the disk; then writers wait too
	go func() {
		w.sem <- struct{}{}
		defer func() { <-w.sem; <-w.pending; w.finishWG.Done() }()
		if err := w.r.finishPack(p); err != nil {
			w.setErr(err)
		}
	}()
}

// finishPack writes the trailer, fsyncs and renames the pack into place.
func (r *Repository) finishPack(p *openPack) error {
	sealed := r.codec.seal.sealMeta(nil, encodeTrailer(p.entries), trailerAAD(p.id))
	foot := make([]byte, 4, packFooterLen)
	binary.LittleEndian.PutUint32(foot, uint32(len(sealed)))
	foot = append(foot, packEndMagic...)
	tmp := p.f.Name()
	_, err := p.f.Write(append(sealed, foot...))
	if err == nil {
		err = p.f.Sync()
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
	return syncDir(filepath.Dir(dst))
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
	if p := w.cur; p != nil {
		p.f.Close()
		os.Remove(p.f.Name())
		w.cur = nil
	}
	w.mu.Unlock()
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
