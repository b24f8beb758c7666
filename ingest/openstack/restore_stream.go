package openstack

import (
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"runtime"
	"sync"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

// restoreStream is an io.Reader over every byte of a restore point's disk, in
// order, zeros included (a Glance upload has no holes). Chunks are read and
// verified by several goroutines ahead of the reader, so the upload is not
// bound by one core's decompression. It hashes what it returns (md5 for
// Glance's "checksum", sha512 for its "os_hash_value") so that the caller
// can prove the image holds exactly the disk's bytes.
type restoreStream struct {
	size    int64
	ctx     context.Context
	cancel  context.CancelFunc
	order   chan chan restoreChunk
	wg      sync.WaitGroup
	cur     restoreChunk
	off     int // read position within cur.buf
	pos     int64
	err     error
	md5     hash.Hash
	sha512  hash.Hash
	pool    sync.Pool
	prog    *ingest.Progress
	stopped bool
}

type restoreChunk struct {
	buf []byte
	err error
}

const restoreChunkSize = 4 << 20

// newRestoreStream starts reading dr. workers <= 0: one per CPU (at least 2).
// Close must be called.
func newRestoreStream(ctx context.Context, dr *repo.DiskReader, workers int, prog *ingest.Progress) *restoreStream {
	if workers <= 0 {
		workers = max(2, runtime.GOMAXPROCS(0))
	}
	if prog == nil {
		prog = &ingest.Progress{}
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &restoreStream{size: dr.Size(), ctx: ctx, cancel: cancel, order: make(chan chan restoreChunk, 2*workers),
		md5: md5.New(), sha512: sha512.New(), prog: prog}
	s.pool.New = func() any { return make([]byte, restoreChunkSize) }
	sem := make(chan struct{}, workers)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.order)
		for off := int64(0); off < s.size; off += restoreChunkSize {
			res := make(chan restoreChunk, 1)
			select {
			case s.order <- res:
			case <-ctx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res <- restoreChunk{err: ctx.Err()}
				return
			}
			s.wg.Add(1)
			go func(off int64) {
				defer s.wg.Done()
				defer func() { <-sem }()
				buf := s.pool.Get().([]byte)[:min(restoreChunkSize, s.size-off)]
				res <- restoreChunk{buf: buf, err: readRestoreChunk(ctx, dr, off, buf, prog)}
			}(off)
		}
	}()
	return s
}

// readRestoreChunk fills buf with the disk's bytes at off, block by block,
// verifying each block (ReadBlockInto checks its hash).
func readRestoreChunk(ctx context.Context, dr *repo.DiskReader, off int64, buf []byte, prog *ingest.Progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	bs := int64(dr.Disk().BlockSize)
	scratch := make([]byte, bs)
	for n := int64(0); n < int64(len(buf)); {
		b := (off + n) / bs
		within := (off + n) - b*bs
		data, err := dr.ReadBlockInto(b, scratch)
		if err != nil {
			return err
		}
		want := min(int64(len(buf))-n, bs-within)
		if data == nil {
			clear(buf[n : n+want])
		} else {
			if int64(len(data)) < within+want {
				return fmt.Errorf("%w: disk %s block %d is short", repo.ErrCorrupt, dr.Disk().Name, b)
			}
			copy(buf[n:n+want], data[within:within+want])
			prog.Read.Add(want)
		}
		n += want
	}
	return nil
}

func (s *restoreStream) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	if err := s.ctx.Err(); err != nil {
		s.err = err
		return 0, err
	}
	for s.off >= len(s.cur.buf) {
		if s.cur.buf != nil {
			s.pool.Put(s.cur.buf[:cap(s.cur.buf)])
			s.cur.buf = nil
		}
		res, ok := <-s.order
		if !ok {
			if s.pos != s.size {
				s.err = fmt.Errorf("disk stream ended at %d of %d bytes", s.pos, s.size)
				return 0, s.err
			}
			s.err = io.EOF
			return 0, io.EOF
		}
		c := <-res
		if c.err != nil {
			s.err = c.err
			return 0, c.err
		}
		s.cur, s.off = c, 0
	}
	n := copy(p, s.cur.buf[s.off:])
	s.md5.Write(p[:n])
	s.sha512.Write(p[:n])
	s.off += n
	s.pos += int64(n)
	s.prog.Done.Add(int64(n))
	return n, nil
}

// Close stops the readers and waits for them.
func (s *restoreStream) Close() error {
	if s.stopped {
		return nil
	}
	s.stopped = true
	s.cancel()
	go func() { // drain so no reader blocks on a full result channel
		for res := range s.order {
			<-res
		}
	}()
	s.wg.Wait()
	return nil
}

// Complete reports whether every byte was read.
func (s *restoreStream) Complete() bool { return s.pos == s.size && s.size >= 0 }

// Sums are the hex md5 and sha512 of the bytes read so far.
func (s *restoreStream) Sums() (md5hex, sha512hex string) {
	return hex.EncodeToString(s.md5.Sum(nil)), hex.EncodeToString(s.sha512.Sum(nil))
}
