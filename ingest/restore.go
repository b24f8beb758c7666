package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/ingest/qcow2"
	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/directio"
)

// RestoreOptions configure writing a disk of a restore point to a file.
type RestoreOptions struct {
	Format    string // "raw" or "qcow2"; "" picks by the target's extension
	Overwrite bool   // replace an existing regular file
	Workers   int    // 0: two per CPU
	Progress  *Progress
}

// RestoreSummary is what a restore did.
type RestoreSummary struct {
	Target   string        `json:"target"`
	Format   string        `json:"format"`
	Size     int64         `json:"size"`
	Written  int64         `json:"bytes_written"`
	Duration time.Duration `json:"duration_ns"`
}

// restoreTarget receives verified data at its disk offset: one block or a
// run of consecutive blocks.
type restoreTarget interface {
	writeAt(off int64, data []byte) error
}

// RestoreDisk writes disk of p to path, byte-exact. A regular file is
// written beside the target and renamed into place only when complete,
// so a failed restore leaves no partial image; holes stay holes. A block
// device target gets every byte, zeros included. Blocks are read, verified
// and written in parallel.
func RestoreDisk(ctx context.Context, r *repo.Repository, p *repo.RestorePoint, disk, path string, o RestoreOptions) (RestoreSummary, error) {
	start := time.Now()
	dr, err := r.OpenDisk(p, disk, 1)
	if err != nil {
		return RestoreSummary{}, err
	}
	if o.Progress == nil {
		o.Progress = &Progress{}
	}
	o.Progress.StartTime = start
	o.Progress.Total.Add(dr.Size())
	o.Progress.Disk.Store(disk)
	format := o.Format
	if format == "" {
		format = "raw"
		if strings.HasSuffix(strings.ToLower(path), ".qcow2") {
			format = "qcow2"
		}
	}
	if format != "raw" && format != "qcow2" {
		return RestoreSummary{}, fmt.Errorf("unknown output format %q: use raw or qcow2", format)
	}
	out, err := openTarget(path, format, o.Overwrite)
	if err != nil {
		return RestoreSummary{}, err
	}
	defer out.cleanup()
	sum := RestoreSummary{Target: path, Format: format, Size: dr.Size()}
	var tgt restoreTarget
	if format == "qcow2" {
		q, err := newQcowTarget(ctx, out.f, dr)
		if err != nil {
			return sum, err
		}
		tgt = q
	} else {
		if err := out.prepareRaw(dr.Size()); err != nil {
			return sum, err
		}
		rt := out.rawTarget()
		if rt.direct != nil && !out.isDevice {
			if err := preallocate(ctx, dr, out.f); err != nil {
				return sum, err
			}
		}
		tgt = rt
	}
	stopFlush := out.startWriteback()
	err = copyBlocks(ctx, dr, tgt, out.isDevice, o)
	stopFlush()
	if err != nil {
		return sum, err
	}
	if q, ok := tgt.(*qcowTarget); ok {
		if err := out.f.Truncate(q.layout.FileSize()); err != nil {
			return sum, fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := out.commit(); err != nil {
		return sum, err
	}
	sum.Written, sum.Duration = o.Progress.Written.Load(), time.Since(start)
	return sum, nil
}

// copyBlocks reads every data block (every block, for devices) and hands it
// to the target. Each worker decodes a batch of consecutive blocks into one
// aligned buffer and writes every run of consecutive data blocks with one
// call: a few large writes instead of one per block, so workers do not queue
// on the file's lock, and the runs qualify for direct I/O.
func copyBlocks(ctx context.Context, dr *repo.DiskReader, tgt restoreTarget, writeZeros bool, o RestoreOptions) error {
	d := dr.Disk()
	workers := o.Workers
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	g, ctx := errgroup.WithContext(ctx)
	type job struct {
		first int64
		ents  []repo.BlockEntry
	}
	jobs := make(chan job, workers*2)
	ntables := (d.Blocks() + int64(d.TableSize) - 1) / int64(d.TableSize)
	g.Go(func() error {
		defer close(jobs)
		for t := int64(0); t < ntables; t++ {
			tbl, err := dr.Table(uint32(t))
			if err != nil {
				return err
			}
			first := t * int64(d.TableSize)
			n := min(int64(d.TableSize), d.Blocks()-first)
			if tbl == nil {
				if writeZeros {
					tbl = make([]repo.BlockEntry, n)
				} else {
					o.Progress.Done.Add(min(n*int64(d.BlockSize), d.Size-first*int64(d.BlockSize)))
					continue
				}
			}
			for i := int64(0); i < n; i += batchBlocks {
				select {
				case jobs <- job{first + i, tbl[i:min(i+batchBlocks, n)]}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	})
	bs := int64(d.BlockSize)
	for w := 0; w < workers; w++ {
		g.Go(func() error {
			buf := directio.Buffer(batchBlocks * int(bs))
			for j := range jobs {
				run, runEnd := int64(-1), int64(0) // bytes of buf holding the current run
				flush := func() error {
					if run < 0 {
						return nil
					}
					err := tgt.writeAt(j.first*bs+run, buf[run:runEnd])
					if err == nil {
						o.Progress.Written.Add(runEnd - run)
					}
					run = -1
					return err
				}
				for i, e := range j.ents {
					b := j.first + int64(i)
					size := min(bs, d.Size-b*bs)
					o.Progress.Done.Add(size)
					slot := buf[int64(i)*bs : int64(i)*bs+size]
					if e.IsZero() {
						if !writeZeros {
							if err := flush(); err != nil {
								return err
							}
							continue
						}
						clear(slot)
					} else {
						data, err := dr.ReadBlockInto(b, slot[:0])
						if err != nil {
							return err
						}
						if &data[0] != &slot[0] {
							copy(slot, data)
						}
						o.Progress.Read.Add(int64(e.Length))
					}
					if run < 0 {
						run = int64(i) * bs
					}
					runEnd = int64(i)*bs + size
				}
				if err := flush(); err != nil {
					return err
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// qcowTarget places blocks in a qcow2 image whose metadata is planned up
// front from the allocation in the restore point.
type qcowTarget struct {
	f           *os.File
	layout      *qcow2.Layout
	clusterBits uint
}

func newQcowTarget(ctx context.Context, f *os.File, dr *repo.DiskReader) (*qcowTarget, error) {
	d := dr.Disk()
	cbits := uint(min(bits.TrailingZeros(uint(d.BlockSize)), 16))
	per := uint64(d.BlockSize) >> cbits
	var alloc []uint64
	ntables := (d.Blocks() + int64(d.TableSize) - 1) / int64(d.TableSize)
	for t := int64(0); t < ntables; t++ {
		tbl, err := dr.Table(uint32(t))
		if err != nil {
			return nil, err
		}
		for i, e := range tbl {
			b := t*int64(d.TableSize) + int64(i)
			if e.IsZero() || b >= d.Blocks() {
				continue
			}
			maxCluster := (uint64(d.Size) + (1 << cbits) - 1) >> cbits
			for c := uint64(b) * per; c < uint64(b+1)*per && c < maxCluster; c++ {
				alloc = append(alloc, c)
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	layout, err := qcow2.PlanLayout(d.Size, int(cbits), alloc)
	if err != nil {
		return nil, err
	}
	if err := layout.WriteMetadata(f); err != nil {
		return nil, fmt.Errorf("write qcow2 metadata to %s: %w", f.Name(), err)
	}
	return &qcowTarget{f: f, layout: layout, clusterBits: cbits}, nil
}

func (t *qcowTarget) writeAt(off int64, data []byte) error {
	cs := int64(1) << t.clusterBits
	for i := int64(0); i < int64(len(data)); i += cs {
		host := t.layout.DataOffset(uint64(off+i) >> t.clusterBits)
		if host < 0 {
			return fmt.Errorf("internal error: cluster at %d was not planned", off+i)
		}
		if _, err := t.f.WriteAt(data[i:min(i+cs, int64(len(data)))], host); err != nil {
			return fmt.Errorf("write %s: %w", t.f.Name(), err)
		}
	}
	return nil
}

// targetFile is the file a restore writes: a temporary file beside a
// regular target (renamed on commit), or the block device itself.
type targetFile struct {
	f        *os.File
	direct   *os.File // the same file opened with O_DIRECT, or nil
	path     string
	tmp      string
	isDevice bool
	done     bool
}

func openTarget(path, format string, overwrite bool) (*targetFile, error) {
	st, err := os.Stat(path)
	switch {
	case err == nil && st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		if format != "raw" {
			return nil, fmt.Errorf("%s is a block device: restore to it as raw", path)
		}
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		return &targetFile{f: f, path: path, isDevice: true}, nil
	case err == nil && !overwrite:
		return nil, fmt.Errorf("%s already exists: choose another path or pass --overwrite", path)
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".partial-")
	if err != nil {
		return nil, fmt.Errorf("create restore target: %w", err)
	}
	return &targetFile{f: f, path: path, tmp: f.Name()}, nil
}

// rawTarget writes raw data to the file, directly where it can.
func (t *targetFile) rawTarget() rawTarget {
	name := t.path
	if t.tmp != "" {
		name = t.tmp
	}
	t.direct = directio.OpenWriter(name)
	return rawTarget{f: t.f, direct: t.direct, noDirect: new(atomic.Bool)}
}

func (t *targetFile) prepareRaw(size int64) error {
	if t.isDevice {
		devSize, err := t.f.Seek(0, 2)
		if err != nil {
			return err
		}
		if devSize < size {
			return fmt.Errorf("block device %s holds %d bytes, the disk needs %d", t.path, devSize, size)
		}
		return nil
	}
	return t.f.Truncate(size)
}

// startWriteback starts writing dirty pages of the target to disk every
// half second while the restore runs, so that the final fsync does not
// have to write the whole image at once: disk writes overlap decoding.
func (t *targetFile) startWriteback() (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				// Asynchronous: starts writeback, waits for nothing.
				_ = unix.SyncFileRange(int(t.f.Fd()), 0, 0, unix.SYNC_FILE_RANGE_WRITE)
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (t *targetFile) commit() error {
	if t.direct != nil {
		t.direct.Close()
	}
	if err := t.f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", t.path, err)
	}
	if err := t.f.Close(); err != nil {
		return err
	}
	if !t.isDevice {
		if err := os.Chmod(t.tmp, 0o600); err != nil {
			return err
		}
		if err := os.Rename(t.tmp, t.path); err != nil {
			return err
		}
	}
	t.done = true
	return nil
}

func (t *targetFile) cleanup() {
	if t.done {
		return
	}
	if t.direct != nil {
		t.direct.Close()
	}
	t.f.Close()
	if t.tmp != "" {
		os.Remove(t.tmp)
	}
}
