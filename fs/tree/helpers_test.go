package tree

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/fs/testimg"
	"github.com/cairn-backup/cairn/guest"
	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

const MiB = testimg.MiB

// fixture is a repository with restore points of disk images.
type fixture struct {
	dir  string
	repo *repo.Repository
	logs *logBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	r, err := repo.Init(filepath.Join(dir, "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &fixture{dir: dir, repo: r, logs: &logBuffer{}}
}

// backup stores one restore point of vm with the given disks (name → image path).
func (f *fixture) backup(t *testing.T, vm string, disks ...[2]string) *repo.RestorePoint {
	t.Helper()
	o := ingest.BackupOptions{VM: vm, Definition: json.RawMessage(`{"name":"` + vm + `","vcpus":2}`)}
	for _, d := range disks {
		o.Disks = append(o.Disks, ingest.DiskSpec{Name: d[0], Path: d[1]})
	}
	p, _, err := ingest.Backup(context.Background(), f.repo, o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// commitAt stores a restore point of vm with the disks of like, at time at.
func (f *fixture) commitAt(t *testing.T, vm string, like *repo.RestorePoint, at time.Time) *repo.RestorePoint {
	t.Helper()
	s, err := f.repo.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	p := &repo.RestorePoint{VM: vm, Time: at, Disks: like.Disks}
	if err := s.Commit(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func (f *fixture) tree(o Options) *Tree {
	if o.Logger == nil {
		o.Logger = log.New(f.logs, "", 0)
	}
	return New(f.repo, o)
}

// gptImage is a 64 MiB disk: p1 ext4 (24 MiB), p2 half random (16 MiB),
// the rest unpartitioned and empty.
func gptImage(t *testing.T, dir string) *testimg.Image {
	return testimg.Make(t, filepath.Join(dir, "gpt.raw"), testimg.Spec{
		Size: 64 * MiB, Label: "gpt", Seed: 1,
		Parts: []testimg.PartSpec{{Size: 24 * MiB, Fill: testimg.Ext4}, {Size: 16 * MiB, Fill: testimg.Random}},
	})
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// walk resolves a slash-separated path from the root, following no symlinks.
func walk(t *testing.T, tr *Tree, names ...string) Node {
	t.Helper()
	var n Node = tr.Root()
	for _, name := range names {
		d, ok := n.(Dir)
		if !ok {
			t.Fatalf("%v: not a directory before %q", names, name)
		}
		c, err := d.Lookup(name)
		if err != nil {
			t.Fatalf("lookup %q in %v: %v", name, names, err)
		}
		n = c
	}
	return n
}

func names(t *testing.T, n Node) []string {
	t.Helper()
	es, err := n.(Dir).Readdir()
	if err != nil {
		t.Fatalf("readdir: %v", err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name)
	}
	return out
}

// readAll reads a file through a handle in chunks of the given size.
func readAll(t *testing.T, n Node, chunk int) []byte {
	t.Helper()
	h, err := n.(File).Open()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var out []byte
	buf := make([]byte, chunk)
	for off := int64(0); ; {
		k, err := h.ReadAt(buf, off)
		out = append(out, buf[:k]...)
		off += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// noReaders keeps guest file systems out of a tree: tests of the disk and
// partition layout do not depend on which readers exist.
var noReaders = []guest.Reader{}
