package fstest

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// Limits bound a walk, so that a crafted tree (a directory listing
// itself, millions of entries, huge files) cannot make it hang.
type Limits struct {
	Visits int   // inodes visited at most, the root included
	Depth  int   // directory levels below the root at most
	Read   int64 // bytes read from the start of each file at most
}

// Result is what a walk read.
type Result struct {
	// Read maps the slash path of every regular file opened ("/dir/name")
	// to the bytes read from it, and of every link read to "-> target".
	Read map[string]string
	// Files counts the regular files opened.
	Files int
	// Errs holds every call that failed, in walk order, as *OpError.
	Errs []error
}

// OpError is a failed call during a walk.
type OpError struct {
	Op   string // Stat, ReadDir, Lookup, Readlink, Open, ReadAt
	Path string
	Err  error
}

func (e *OpError) Error() string { return fmt.Sprintf("%s(%s): %v", e.Op, e.Path, e.Err) }
func (e *OpError) Unwrap() error { return e.Err }

// Ops returns the errors of the failed calls named op.
func (r *Result) Ops(op string) []error {
	var out []error
	for _, err := range r.Errs {
		if e, ok := err.(*OpError); ok && e.Op == op {
			out = append(out, err)
		}
	}
	return out
}

// Walk reads fsys depth-first from its root within lim: it Stats every
// inode, lists every directory and Looks up every listed name in it,
// reads every link, and opens every other inode and reads it in 64 KiB
// ReadAt calls. Open on an inode that is not a regular file may fail
// with vfs.ErrNotFile; any other failure is recorded in Errs and the
// walk goes on.
func Walk(fsys vfs.FS, lim Limits) *Result {
	w := &walker{fsys: fsys, lim: lim, res: &Result{Read: map[string]string{}}, buf: make([]byte, 64<<10)}
	w.walk(fsys.Root(), "", 0)
	return w.res
}

type walker struct {
	fsys   vfs.FS
	lim    Limits
	res    *Result
	buf    []byte
	visits int
}

func (w *walker) fail(op, p string, err error) {
	w.res.Errs = append(w.res.Errs, &OpError{op, p, err})
}

func (w *walker) walk(ino uint64, p string, depth int) {
	if w.visits++; w.visits > w.lim.Visits || depth > w.lim.Depth {
		return
	}
	fi, err := w.fsys.Stat(ino)
	if err != nil {
		w.fail("Stat", p, err)
		return
	}
	switch fi.Mode & vfs.ModeType {
	case vfs.ModeDir:
		ents, err := w.fsys.ReadDir(ino)
		if err != nil {
			w.fail("ReadDir", p, err)
			return
		}
		for _, e := range ents {
			if _, err := w.fsys.Lookup(ino, e.Name); err != nil {
				w.fail("Lookup", p+"/"+e.Name, err)
			}
			w.walk(e.Ino, p+"/"+e.Name, depth+1)
		}
	case vfs.ModeLink:
		target, err := w.fsys.Readlink(ino)
		if err != nil {
			w.fail("Readlink", p, err)
			return
		}
		w.res.Read[p] = "-> " + target
	default:
		w.read(ino, p, fi.Mode&vfs.ModeType == vfs.ModeFile)
	}
}

func (w *walker) read(ino uint64, p string, regular bool) {
	f, err := w.fsys.Open(ino)
	if err != nil {
		if regular || !errors.Is(err, vfs.ErrNotFile) {
			w.fail("Open", p, err)
		}
		return
	}
	w.res.Files++
	var content []byte
	end := min(f.Size(), w.lim.Read)
	for off := int64(0); off < end; {
		n, err := f.ReadAt(w.buf[:min(int64(len(w.buf)), end-off)], off)
		content = append(content, w.buf[:n]...)
		off += int64(n)
		if err != nil {
			if err != io.EOF {
				w.fail("ReadAt", p, err)
			}
			break
		}
		if n == 0 {
			break
		}
	}
	w.res.Read[p] = string(content)
}

// CheckConcurrentWalks walks fsys once, then from n goroutines at once
// (run the tests with -race: every vfs.FS method is documented safe for
// concurrent use), and fails the test unless every concurrent walk read
// the same bytes and met the same errors as the first one. It returns
// the first walk's result for the caller's own checks.
func CheckConcurrentWalks(tb testing.TB, fsys vfs.FS, n int, lim Limits) *Result {
	tb.Helper()
	want := Walk(fsys, lim)
	got := make([]*Result, n)
	var wg sync.WaitGroup
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = Walk(fsys, lim)
		}()
	}
	wg.Wait()
	for i, r := range got {
		if !maps.Equal(r.Read, want.Read) || r.Files != want.Files || !slices.Equal(errStrings(r.Errs), errStrings(want.Errs)) {
			tb.Errorf("concurrent walk %d disagrees with a sequential one: %d files read, errors %v; want %d, %v",
				i, len(r.Read), r.Errs, len(want.Read), want.Errs)
		}
	}
	return want
}

func errStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, err := range errs {
		out[i] = err.Error()
	}
	return out
}
