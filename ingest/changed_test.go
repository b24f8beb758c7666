package ingest

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-backup/cairn/ingest/source"
	"github.com/cairn-backup/cairn/repo"
)

// countingSource records which bytes were read.
type countingSource struct {
	source.Source
	read []Extent
}

func (c *countingSource) ReadAt(p []byte, off int64) (int, error) {
	c.read = append(c.read, Extent{off, int64(len(p))})
	return c.Source.ReadAt(p, off)
}

func writeImage(t *testing.T, path string, img []byte) {
	t.Helper()
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}

func openSource(t *testing.T, path string) *countingSource {
	t.Helper()
	s, err := source.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &countingSource{Source: s}
}

func restoreBytes(t *testing.T, r *repo.Repository, p *repo.RestorePoint, disk string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.raw")
	if _, err := RestoreDisk(context.Background(), r, p, disk, out, RestoreOptions{Format: "raw"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBlockRuns(t *testing.T) {
	got := blockRuns([]Extent{{200, 10}, {0, 1}, {64, 64}, {129, 1}, {1000, 0}, {-5, 3}, {900, 500}}, 64, 16)
	want := [][2]int64{{0, 3}, {14, 15}} // adjacent runs merge
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// TestIncrementalFromChangedExtents: an incremental backup reads only the
// blocks the changed extents touch, takes everything else from the parent
// (reusing untouched tables by reference), and is a complete disk.
func TestIncrementalFromChangedExtents(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := repo.Init(filepath.Join(dir, "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.Config()
	bs, tableBytes := int64(cfg.BlockSize), int64(cfg.BlockSize*cfg.TableSize)
	size := 3*tableBytes + 5*bs + 1000 // a short last block, four tables
	rng := rand.New(rand.NewPCG(1, 2))
	img := make([]byte, size)
	for _, e := range []Extent{{0, 3 * bs}, {tableBytes + 7*bs, 40 * bs}, {2 * tableBytes, bs}, {size - 3000, 3000}} {
		for i := e.Off; i < e.Off+e.Len; i++ {
			img[i] = byte(rng.Uint32())
		}
	}
	path := filepath.Join(dir, "disk.raw")
	writeImage(t, path, img)
	full, _, err := BackupSources(ctx, r, BackupOptions{VM: "vm", Source: "test"}, nil,
		[]SourceDisk{{Name: "vda", Label: path, Source: openSource(t, path)}})
	if err != nil {
		t.Fatal(err)
	}

	// Changes: inside table 1 (unaligned), zeroing a block in table 0,
	// a new block in table 3 (the short tail). Table 2 is untouched.
	cur := bytes.Clone(img)
	changed := []Extent{{tableBytes + 7*bs + 100, 5000}, {bs, bs}, {size - 500, 500}}
	for i := changed[0].Off; i < changed[0].Off+changed[0].Len; i++ {
		cur[i] = 0xAB
	}
	clear(cur[bs : 2*bs])
	copy(cur[size-500:], bytes.Repeat([]byte{7}, 500))
	// A change the caller does not report must not be read: it proves
	// that unreported blocks come from the parent.
	unreported := 2*tableBytes + 10
	cur[unreported] ^= 0xFF
	writeImage(t, path, cur)
	src := openSource(t, path)
	inc, sum, err := BackupSources(ctx, r, BackupOptions{VM: "vm", Source: "test"}, full,
		[]SourceDisk{{Name: "vda", Label: path, Source: src, Incremental: true, Changed: changed}})
	if err != nil {
		t.Fatal(err)
	}
	if inc.Parent != full.ID {
		t.Fatalf("parent %q, want %q", inc.Parent, full.ID)
	}
	// Blocks touched: 1 (zeroed), one in table 1, the short last block.
	if want := 2*bs + (size - (size/bs)*bs); sum.BytesRead != want {
		t.Fatalf("read %d bytes, want %d", sum.BytesRead, want)
	}
	for _, e := range src.read {
		if e.Off <= unreported && unreported < e.Off+e.Len {
			t.Fatalf("read the unreported change at %d", unreported)
		}
	}
	want := bytes.Clone(cur)
	want[unreported] ^= 0xFF // the parent's byte
	if got := restoreBytes(t, r, inc, "vda"); !bytes.Equal(got, want) {
		t.Fatalf("restored incremental differs at %d", firstDiffAt(got, want))
	}
	if got := restoreBytes(t, r, full, "vda"); !bytes.Equal(got, img) {
		t.Fatal("the parent changed")
	}
	pd, _ := full.Disk("vda")
	id, _ := inc.Disk("vda")
	if pd.Tables[2] != id.Tables[2] {
		t.Fatalf("untouched table 2 not reused: %+v vs %+v", pd.Tables[2], id.Tables[2])
	}
	if pd.Tables[1].ID == id.Tables[1].ID {
		t.Fatal("changed table 1 kept the parent's table")
	}

	// An incremental of an incremental, with no changes at all.
	inc2, sum2, err := BackupSources(ctx, r, BackupOptions{VM: "vm"}, inc,
		[]SourceDisk{{Name: "vda", Label: path, Source: openSource(t, path), Incremental: true}})
	if err != nil {
		t.Fatal(err)
	}
	if sum2.BytesRead != 0 {
		t.Fatalf("no changes but read %d bytes", sum2.BytesRead)
	}
	if got := restoreBytes(t, r, inc2, "vda"); !bytes.Equal(got, want) {
		t.Fatal("second incremental differs")
	}
}

func firstDiffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestIncrementalNeedsBase: no base, a base without the disk, or a disk
// whose size changed are ErrNoBase, and nothing is written.
func TestIncrementalNeedsBase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r, err := repo.Init(filepath.Join(dir, "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "d.raw")
	writeImage(t, path, bytes.Repeat([]byte{1}, 1<<20))
	sd := func(name string, inc bool) []SourceDisk {
		return []SourceDisk{{Name: name, Label: path, Source: openSource(t, path), Incremental: inc}}
	}
	if _, _, err := BackupSources(ctx, r, BackupOptions{VM: "vm"}, nil, sd("vda", true)); !errors.Is(err, ErrNoBase) {
		t.Fatalf("no base: %v", err)
	}
	full, _, err := BackupSources(ctx, r, BackupOptions{VM: "vm"}, nil, sd("vda", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := BackupSources(ctx, r, BackupOptions{VM: "vm"}, full, sd("vdb", true)); !errors.Is(err, ErrNoBase) {
		t.Fatalf("missing disk: %v", err)
	}
	writeImage(t, path, bytes.Repeat([]byte{1}, 2<<20))
	if _, _, err := BackupSources(ctx, r, BackupOptions{VM: "vm"}, full, sd("vda", true)); !errors.Is(err, ErrNoBase) {
		t.Fatalf("resized disk: %v", err)
	}
	pts, _ := r.Points()
	if len(pts) != 1 {
		t.Fatalf("%d restore points, want 1", len(pts))
	}
}
