package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Small geometry keeps packs and disks tiny so the whole package stays fast.
const (
	testBlockSize = 4096
	testPackSize  = 1 << 20
	testTableSize = 16 // entries per block table in test disks (64 KiB of disk)
)

// testKey is key-file credentials: HKDF, so opening is cheap (passwords
// cost an argon2 derivation each).
var testKey = Credentials{KeyFile: []byte("cairn-test-key-file-0123456789abcdef")}

// newTestRepo creates a repository with small blocks and packs, encrypted
// with testKey when enc.
func newTestRepo(t testing.TB, enc bool) *Repository {
	t.Helper()
	o := InitOptions{BlockSize: testBlockSize, PackSize: testPackSize}
	if enc {
		o.Encrypt, o.Credentials = true, testKey
	}
	r, err := Init(filepath.Join(t.TempDir(), "repo"), o)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// reopen opens a second handle on r's directory, as another process would.
func reopen(t testing.TB, r *Repository) *Repository {
	t.Helper()
	var c Credentials
	if r.cfg.Encrypted() {
		c = testKey
	}
	r2, err := Open(r.Dir(), c)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r2.Close() })
	return r2
}

// blockData returns a deterministic, incompressible block for seed; seed 0
// is the zero block.
func blockData(seed uint64, n int) []byte {
	b := make([]byte, n)
	if seed == 0 {
		return b
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// compressibleBlock is text that lz4 shrinks a lot, so it is stored with
// the lz4 codec.
func compressibleBlock(tag string, n int) []byte {
	var buf bytes.Buffer
	for i := 0; buf.Len() < n; i++ {
		buf.WriteString(tag)
		buf.WriteString(" line ")
		buf.WriteString(strings.Repeat("x", i%7))
		buf.WriteByte('\n')
	}
	return buf.Bytes()[:n]
}

// imageFromSeeds concatenates blockData(seed) for each seed; the last
// block is cut to tail bytes when tail > 0.
func imageFromSeeds(seeds []uint64, tail int) []byte {
	var img []byte
	for i, s := range seeds {
		b := blockData(s, testBlockSize)
		if i == len(seeds)-1 && tail > 0 {
			b = b[:tail]
		}
		img = append(img, b...)
	}
	return img
}

func seedRange(from, n uint64) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = from + uint64(i)
	}
	return out
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// storeDisk stores img through s as a disk of testBlockSize blocks and
// ts-entry tables, the way ingest does: zero blocks and all-zero tables
// are not stored.
func storeDisk(t testing.TB, s *Session, name string, img []byte, ts int) Disk {
	t.Helper()
	d, err := storeDiskErr(s, name, img, ts)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func storeDiskErr(s *Session, name string, img []byte, ts int) (Disk, error) {
	bs := testBlockSize
	d := Disk{Name: name, Size: int64(len(img)), BlockSize: bs, TableSize: ts}
	blocks := d.Blocks()
	for ti := int64(0); ti*int64(ts) < blocks; ti++ {
		entries := make([]BlockEntry, ts)
		used := false
		for i := int64(0); i < int64(ts); i++ {
			b := ti*int64(ts) + i
			if b >= blocks {
				break
			}
			blk := img[b*int64(bs) : min((b+1)*int64(bs), int64(len(img)))]
			if allZero(blk) {
				continue
			}
			id := s.r.Hasher().Sum(blk)
			loc, _, err := s.Store(BlobData, id, blk)
			if err != nil {
				return d, fmt.Errorf("store block %d: %w", b, err)
			}
			entries[i] = BlockEntry{ID: id, Location: loc}
			used = true
		}
		if !used {
			continue
		}
		ref, err := s.StoreTable(uint32(ti), entries)
		if err != nil {
			return d, fmt.Errorf("store table %d: %w", ti, err)
		}
		d.Tables = append(d.Tables, ref)
	}
	return d, nil
}

type diskImage struct {
	name string
	img  []byte
	ts   int // table size; 0: testTableSize
}

// commitPoint stores the images in a new session of r and commits a
// restore point for vm.
func commitPoint(t testing.TB, r *Repository, vm string, disks ...diskImage) *RestorePoint {
	t.Helper()
	s, err := r.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	p := &RestorePoint{VM: vm, Source: "image", Consistency: "crash"}
	for _, di := range disks {
		ts := di.ts
		if ts == 0 {
			ts = testTableSize
		}
		p.Disks = append(p.Disks, storeDisk(t, s, di.name, di.img, ts))
	}
	if err := s.Commit(p); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return p
}

// readDisk reads a whole disk of p back through a fresh DiskReader.
func readDisk(t testing.TB, r *Repository, p *RestorePoint, name string) []byte {
	t.Helper()
	dr, err := r.OpenDisk(p, name, 0)
	if err != nil {
		t.Fatalf("OpenDisk %s: %v", name, err)
	}
	buf := make([]byte, dr.Size())
	n, err := dr.ReadAt(buf, 0)
	if err != nil && !(err == io.EOF && n == len(buf)) {
		t.Fatalf("read disk %s: %d bytes, %v", name, n, err)
	}
	if n != len(buf) {
		t.Fatalf("read disk %s: %d of %d bytes", name, n, len(buf))
	}
	return buf
}

// assertDisk checks that disk name of point id (re-loaded from the
// repository) reads back as want.
func assertDisk(t testing.TB, r *Repository, id, name string, want []byte) {
	t.Helper()
	p, err := r.LoadPoint(id)
	if err != nil {
		t.Fatalf("LoadPoint %s: %v", id, err)
	}
	got := readDisk(t, r, p, name)
	if !bytes.Equal(got, want) {
		t.Fatalf("point %s disk %s: content differs from what was backed up (first difference at %d)", id, name, firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < min(len(a), len(b)); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// repoFiles maps every file under dir (relative path) to a digest of its
// content. Directories under skip are left out.
func repoFiles(t testing.TB, dir string, skip ...string) map[string]string {
	t.Helper()
	out := make(map[string]string)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		for _, s := range skip {
			if rel == s || strings.HasPrefix(rel, s+string(filepath.Separator)) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		if d.IsDir() {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(raw)
		out[rel] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

func dirBytes(t testing.TB, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return n
}

// packIDs lists the packs on disk, sorted.
func packIDs(t testing.TB, r *Repository) []PackID {
	t.Helper()
	disk, err := r.packsOnDisk()
	if err != nil {
		t.Fatalf("packsOnDisk: %v", err)
	}
	ids := make([]PackID, 0, len(disk))
	for id := range disk {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	return ids
}

// blockEntry returns the table entry of block b of disk name of p.
func blockEntry(t testing.TB, r *Repository, p *RestorePoint, name string, b int64) BlockEntry {
	t.Helper()
	dr, err := r.OpenDisk(p, name, 0)
	if err != nil {
		t.Fatalf("OpenDisk: %v", err)
	}
	e, err := dr.Entry(b)
	if err != nil {
		t.Fatalf("Entry %d: %v", b, err)
	}
	if e.IsZero() {
		t.Fatalf("block %d is a zero block", b)
	}
	return e
}

// flipByte xors one byte of a file.
func flipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5a
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// indexState reads the merged index: its pack records and blob records.
func indexState(t testing.TB, r *Repository) (map[PackID]packRecord, map[ID]packEntry) {
	t.Helper()
	ix, err := openIndex(r.indexDir(), true)
	if err != nil {
		t.Fatalf("open index: %v", err)
	}
	defer ix.close()
	packs, err := ix.packs()
	if err != nil {
		t.Fatalf("index packs: %v", err)
	}
	blobs := make(map[ID]packEntry)
	if err := ix.forEachBlob(func(e packEntry) error { blobs[e.ID] = e; return nil }); err != nil {
		t.Fatalf("index blobs: %v", err)
	}
	return packs, blobs
}

// assertIndexMatchesPacks checks that the index knows exactly the packs on
// disk, that every blob record points into one of them, at an entry of its
// trailer, and that every blob of a trailer has a record.
func assertIndexMatchesPacks(t testing.TB, r *Repository) {
	t.Helper()
	disk, err := r.packsOnDisk()
	if err != nil {
		t.Fatal(err)
	}
	packs, blobs := indexState(t, r)
	for id := range packs {
		if _, ok := disk[id]; !ok {
			t.Errorf("index has a record of pack %s, which is not on disk", id)
		}
	}
	for id, size := range disk {
		rec, ok := packs[id]
		if !ok {
			t.Errorf("pack %s on disk is not in the index", id)
		} else if rec.Size != size {
			t.Errorf("index says pack %s has %d bytes, disk %d", id, rec.Size, size)
		}
	}
	trailers := make(map[PackID]map[uint32]packEntry)
	for id := range disk {
		entries, _, err := r.loadTrailer(id)
		if err != nil {
			t.Fatalf("trailer %s: %v", id, err)
		}
		m := make(map[uint32]packEntry)
		for _, e := range entries {
			m[e.Offset] = e
			if _, ok := blobs[e.ID]; !ok {
				t.Errorf("blob %s of pack %s has no index record", e.ID.Short(), id)
			}
		}
		trailers[id] = m
	}
	bad := 0
	for id, e := range blobs {
		tr, ok := trailers[e.Pack]
		if !ok {
			bad++
			if bad <= 5 {
				t.Errorf("index record of blob %s points at pack %s, which is not on disk", id.Short(), e.Pack)
			}
			continue
		}
		if te, ok := tr[e.Offset]; !ok || te.ID != id || te.Length != e.Length || te.Type != e.Type {
			t.Errorf("index record of blob %s does not match pack %s's trailer", id.Short(), e.Pack)
		}
	}
	if bad > 5 {
		t.Errorf("... %d index records point at missing packs in all", bad)
	}
}

// checkOK runs Check and fails on any error.
func checkOK(t testing.TB, r *Repository, readData bool) *CheckReport {
	t.Helper()
	rep, err := r.Check(CheckOptions{ReadData: readData})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Check found errors: %q", rep.Errors)
	}
	return rep
}

func containsAny(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// benchBlobs stores n 64 KiB data blobs in a new encrypted repository, half
// incompressible (stored raw) and half text (lz4), and returns the
// repository, the still-open session and the blobs' block entries.
func benchBlobs(b *testing.B, n int) (*Repository, *Session, []BlockEntry) {
	const bs = 64 << 10
	r, err := Init(b.TempDir()+"/repo", InitOptions{BlockSize: bs, PackSize: 16 << 20, Encrypt: true, Credentials: testKey})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	s, err := r.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	entries := make([]BlockEntry, n)
	for i := range entries {
		data := blockData(uint64(i+1), bs)
		if i%2 == 1 {
			data = compressibleBlock(fmt.Sprint(i), bs)
		}
		id := r.codec.hasher.Sum(data)
		loc, _, err := s.Store(BlobData, id, data)
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = BlockEntry{ID: id, Location: loc}
	}
	return r, s, entries
}
