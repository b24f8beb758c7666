package ext

import (
	"fmt"
	"io"
	"sort"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// file is an open regular file (or directory, or slow symlink): its
// block map resolved once into runs, so ReadAt is a binary search and one
// read of the volume per contiguous piece.
type file struct {
	dev    *device
	bs     uint64
	size   int64
	runs   []run
	inline []byte // content of an inline-data inode; runs is nil then
}

var _ vfs.File = (*file)(nil)

func (f *FS) openInode(in *inode) (*file, error) {
	if in.flags&flagEncrypt != 0 {
		return nil, fmt.Errorf("ext: inode %d: %w", in.ino, ErrEncrypted)
	}
	if int64(in.size) < 0 {
		return nil, fmt.Errorf("ext: inode %d: size %d: %w", in.ino, in.size, vfs.ErrMalformed)
	}
	fl := &file{dev: f.dev, bs: f.sb.blockSize, size: int64(in.size)}
	if in.flags&flagInlineData != 0 {
		more, err := in.inlineData()
		if err != nil {
			return nil, err
		}
		// Past the inline bytes the file reads as zeros, as the kernel
		// reads it (mke2fs -d makes such inodes for files with no data).
		data := append(append([]byte(nil), in.iblock[:]...), more...)
		fl.inline = data[:min(uint64(len(data)), in.size)]
		return fl, nil
	}
	runs, err := f.fileRuns(in)
	if err != nil {
		return nil, err
	}
	fl.runs = runs
	return fl, nil
}

func (fl *file) Size() int64 { return fl.size }

// ReadAt reads len(p) bytes at off; holes and unwritten extents read as
// zeros. Contiguous blocks are read from the volume in one call.
func (fl *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("ext: negative offset %d", off)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > fl.size-off {
		p = p[:fl.size-off]
	}
	if fl.inline != nil {
		n := 0
		if off < int64(len(fl.inline)) {
			n = copy(p, fl.inline[off:])
		}
		clear(p[n:])
		return fl.eof(len(p), want)
	}
	done := 0
	bs := fl.bs
	i := sort.Search(len(fl.runs), func(i int) bool {
		r := fl.runs[i]
		return (r.log+r.n)*bs > uint64(off)
	})
	for done < len(p) {
		pos := uint64(off) + uint64(done)
		rest := p[done:]
		if i >= len(fl.runs) || fl.runs[i].log*bs > pos {
			// A hole up to the next run (or the end).
			n := uint64(len(rest))
			if i < len(fl.runs) {
				n = min(n, fl.runs[i].log*bs-pos)
			}
			clear(rest[:n])
			done += int(n)
			continue
		}
		r := fl.runs[i]
		n := min(uint64(len(rest)), (r.log+r.n)*bs-pos)
		phys := r.phys*bs + (pos - r.log*bs)
		if err := fl.dev.readAt(rest[:n], int64(phys)); err != nil {
			return done, err
		}
		done += int(n)
		i++
	}
	return fl.eof(done, want)
}

func (fl *file) eof(n, want int) (int, error) {
	if n < want {
		return n, io.EOF
	}
	return n, nil
}
