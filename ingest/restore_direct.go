package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/repo"
	"github.com/cairn-backup/cairn/repo/directio"
)

// rawTarget writes a raw image. Aligned runs go through a second handle
// opened with O_DIRECT: the restored image does not pass through the page
// cache, so the restore neither pays for copying every byte into it (on a
// virtual machine, fresh page-cache pages are expensive) nor evicts the
// host's working set with an image nobody reads back. Unaligned pieces (a
// disk size that is not a multiple of the page) and file systems that
// refuse O_DIRECT use the ordinary handle; the final fsync covers both.
type rawTarget struct {
	f        *os.File
	direct   *os.File     // nil: no direct I/O
	noDirect *atomic.Bool // the file system refused a direct write
}

func (t rawTarget) writeAt(off int64, data []byte) error {
	if t.direct != nil && !t.noDirect.Load() && off%directio.Align == 0 && directio.Aligned(data) {
		n := len(data) &^ (directio.Align - 1)
		if n > 0 {
			_, err := t.direct.WriteAt(data[:n], off)
			switch {
			case err == nil:
				off, data = off+int64(n), data[n:]
			case directio.Unsupported(err):
				t.noDirect.Store(true) // the file system takes no direct I/O after all
			default:
				return fmt.Errorf("write %s at %d: %w", t.f.Name(), off, err)
			}
		}
	}
	if len(data) == 0 {
		return nil
	}
	if _, err := t.f.WriteAt(data, off); err != nil {
		return fmt.Errorf("write %s at %d: %w", t.f.Name(), off, err)
	}
	return nil
}

// preallocate reserves the disk's data blocks in the target file before
// any is written. Direct writes into reserved (unwritten) extents are
// overwrites, which the file system lets run in parallel; writes into holes
// would each take the file exclusively until the device completes them.
// It also makes a restore that cannot fit fail at once with ENOSPC rather
// than after writing most of the image. File systems without fallocate
// skip it.
func preallocate(ctx context.Context, dr *repo.DiskReader, f *os.File) error {
	d := dr.Disk()
	bs := int64(d.BlockSize)
	ntables := (d.Blocks() + int64(d.TableSize) - 1) / int64(d.TableSize)
	start, end := int64(-1), int64(0)
	reserve := func() error {
		if start < 0 {
			return nil
		}
		at := start
		start = -1
		err := unix.Fallocate(int(f.Fd()), 0, at, end-at)
		if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("reserve %d bytes at %d in %s: %w", end-at, at, f.Name(), err)
		}
		return err
	}
	for t := int64(0); t < ntables; t++ {
		tbl, err := dr.Table(uint32(t))
		if err != nil {
			return err
		}
		for i, e := range tbl {
			b := t*int64(d.TableSize) + int64(i)
			if b >= d.Blocks() {
				break
			}
			if e.IsZero() {
				if err := reserve(); err != nil {
					return ignoreUnsupported(err)
				}
				continue
			}
			if start < 0 {
				start = b * bs
			}
			end = min((b+1)*bs, d.Size)
		}
		if tbl == nil {
			if err := reserve(); err != nil {
				return ignoreUnsupported(err)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return ignoreUnsupported(reserve())
}

func ignoreUnsupported(err error) error {
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	return err
}
