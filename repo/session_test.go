package repo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// roundTripImage is a disk of 50 full blocks and a 1000-byte tail, in
// 16-block tables: table 0 mixes random, zero, duplicate and compressible
// blocks, table 1 is all zeros (and so absent), tables 2 and 3 hold data.
func roundTripImage() []byte {
	seeds := make([]uint64, 51)
	for i := range seeds {
		switch {
		case i >= 16 && i < 32:
			seeds[i] = 0 // table 1: zeros
		case i == 3 || i == 9 || i == 40:
			seeds[i] = 0
		case i == 5 || i == 11:
			seeds[i] = 1001 // same content as block 1
		default:
			seeds[i] = 1000 + uint64(i)
		}
	}
	img := imageFromSeeds(seeds, 1000)
	copy(img[7*testBlockSize:8*testBlockSize], compressibleBlock("block seven", testBlockSize))
	copy(img[33*testBlockSize:34*testBlockSize], compressibleBlock("block thirty-three", testBlockSize))
	return img
}

func TestSessionRoundTrip(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			testSessionRoundTrip(t, enc)
		})
	}
}

func testSessionRoundTrip(t *testing.T, enc bool) {
	r := newTestRepo(t, enc)
	img := roundTripImage()
	small := imageFromSeeds([]uint64{77, 0, 78, 79, 77}, 0)

	s, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	p := &RestorePoint{
		VM: "web-01", Tags: map[string]string{"env": "prod"}, Parent: "0011223344556677",
		Source: "image", Consistency: "filesystem", Definition: json.RawMessage(`{"cpus":2,"memory_mib":2048}`),
	}
	p.Disks = append(p.Disks,
		storeDisk(t, s, "sda", img, testTableSize),
		storeDisk(t, s, "sdb", small, DefaultTableSize),
		Disk{Name: "empty", BlockSize: testBlockSize, TableSize: testTableSize},
	)
	// Duplicate blocks are stored once. sda: 51 blocks of which 19 are
	// zero and 2 duplicates, in 3 tables; sdb: 3 distinct blocks, 1 table.
	blobs, raw, stored := s.Stored()
	if want := int64(51-19-2) + 3 + 3 + 1; blobs != want {
		t.Errorf("session stored %d blobs, want %d", blobs, want)
	}
	if stored >= raw {
		t.Errorf("stored %d bytes for %d raw: compressible blocks and tables were not compressed", stored, raw)
	}
	// Storing again inside the session is deduplicated.
	id := r.Hasher().Sum(img[:testBlockSize])
	if _, isNew, err := s.Store(BlobData, id, img[:testBlockSize]); err != nil || isNew {
		t.Errorf("re-Store in session: isNew=%v err=%v", isNew, err)
	}
	if err := s.Commit(p); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if !validPointID(p.ID) || p.Version != FormatVersion || p.Time.IsZero() || p.Host == "" {
		t.Errorf("Commit did not fill in the point: %+v", p)
	}
	if got := p.Disks[0].Tables; len(got) != 3 || got[0].Index != 0 || got[1].Index != 2 || got[2].Index != 3 {
		t.Fatalf("sda tables: %+v (want 0, 2, 3: table 1 is all zeros)", got)
	}
	r.Close()

	r2 := reopen(t, r)
	ids, err := r2.PointIDs()
	if err != nil || len(ids) != 1 || ids[0] != p.ID {
		t.Fatalf("PointIDs = %v, %v", ids, err)
	}
	lp, err := r2.LoadPoint(p.ID[:5]) // unique prefix
	if err != nil {
		t.Fatalf("LoadPoint by prefix: %v", err)
	}
	if lp.VM != p.VM || lp.Tags["env"] != "prod" || lp.Parent != p.Parent || !lp.Time.Equal(p.Time) ||
		string(lp.Definition) != string(p.Definition) || len(lp.Disks) != 3 || lp.Host != p.Host {
		t.Fatalf("loaded point differs: %+v", lp)
	}
	if _, err := lp.Disk("sdc"); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "sda, sdb, empty") {
		t.Errorf("missing disk: %v", err)
	}

	assertDisk(t, r2, p.ID, "sda", img)
	assertDisk(t, r2, p.ID, "sdb", small)
	assertDisk(t, r2, p.ID, "empty", nil)

	dr, err := r2.OpenDisk(lp, "sda", 64<<10) // small cache: reads go to the packs
	if err != nil {
		t.Fatal(err)
	}
	if dr.Size() != int64(len(img)) || dr.Disk().Name != "sda" {
		t.Fatalf("Size %d Disk %q", dr.Size(), dr.Disk().Name)
	}
	if tbl, err := dr.Table(1); tbl != nil || err != nil {
		t.Errorf("absent table 1: %v, %v", tbl, err)
	}
	if b, err := dr.ReadBlock(20); b != nil || err != nil {
		t.Errorf("block in absent table: %d bytes, %v", len(b), err)
	}
	if b, err := dr.ReadBlock(3); b != nil || err != nil {
		t.Errorf("zero block: %d bytes, %v", len(b), err)
	}
	if b, err := dr.ReadBlock(50); err != nil || !bytes.Equal(b, img[50*testBlockSize:]) {
		t.Errorf("short last block: %d bytes, %v", len(b), err)
	}

	size := int64(len(img))
	bs := int64(testBlockSize)
	tbl := int64(testTableSize) * bs
	cases := []struct{ off, n int64 }{
		{0, 1}, {0, bs}, {1, bs}, {bs - 1, 2}, {bs, bs}, {bs + 7, 3*bs + 11},
		{3*bs - 5, 10},                 // data into a zero block
		{tbl - 10, 20},                 // table 0 into absent table 1
		{2*tbl - 3, 6},                 // absent table into table 2
		{tbl + 100, 200},               // inside the absent table
		{7*bs + 13, 100},               // compressible block
		{size - 1000, 1000},            // exactly the short tail
		{size - 1, 1},                  // last byte
		{0, size},                      // everything
		{3*tbl - 4096 - 1, 4096 + 502}, // across table 2/3 boundary
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 300; i++ {
		off := rng.Int64N(size)
		cases = append(cases, struct{ off, n int64 }{off, 1 + rng.Int64N(min(size-off, 3*bs))})
	}
	for _, c := range cases {
		buf := bytes.Repeat([]byte{0xee}, int(c.n)) // zero regions must be cleared
		n, err := dr.ReadAt(buf, c.off)
		if err != nil || int64(n) != c.n {
			t.Fatalf("ReadAt(%d, %d) = %d, %v", c.off, c.n, n, err)
		}
		if !bytes.Equal(buf, img[c.off:c.off+c.n]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes (first difference at +%d)", c.off, c.n, firstDiff(buf, img[c.off:c.off+c.n]))
		}
	}
	// Reads at and past the end.
	buf := make([]byte, 100)
	if n, err := dr.ReadAt(buf, size); n != 0 || err != io.EOF {
		t.Errorf("ReadAt(size) = %d, %v; want 0, EOF", n, err)
	}
	if n, err := dr.ReadAt(buf, size+12345); n != 0 || err != io.EOF {
		t.Errorf("ReadAt past end = %d, %v; want 0, EOF", n, err)
	}
	for i := range buf {
		buf[i] = 0xee
	}
	n, err := dr.ReadAt(buf, size-10)
	if n != 10 || err != io.EOF || !bytes.Equal(buf[:10], img[size-10:]) {
		t.Errorf("ReadAt across the end = %d, %v", n, err)
	}
	if _, err := dr.ReadAt(buf, -1); err == nil {
		t.Error("ReadAt(-1) succeeded")
	}
	if n, err := dr.ReadAt(nil, 5); n != 0 || err != nil {
		t.Errorf("empty ReadAt = %d, %v", n, err)
	}
	// A zero-size disk reads nothing.
	de, err := r2.OpenDisk(lp, "empty", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := de.ReadAt(buf, 0); n != 0 || err != io.EOF {
		t.Errorf("empty disk ReadAt = %d, %v", n, err)
	}
	// Concurrent readers of one DiskReader agree with the image.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			b := make([]byte, 5000)
			for i := 0; i < 100; i++ {
				off := rng.Int64N(size - int64(len(b)))
				if _, err := dr.ReadAt(b, off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(b, img[off:off+int64(len(b))]) {
					errs <- fmt.Errorf("concurrent ReadAt(%d) returned wrong bytes", off)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkOK(t, r2, true)
}

func TestLoadPointErrors(t *testing.T) {
	r := newTestRepo(t, false)
	for _, id := range []string{"aaaa000000000001", "aaaa000000000002", "bbbb000000000001"} {
		s, err := r.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Commit(&RestorePoint{ID: id, VM: "vm"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.LoadPoint("aaaa"); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if p, err := r.LoadPoint("bbbb"); err != nil || p.ID != "bbbb000000000001" {
		t.Errorf("unique prefix: %v, %v", p, err)
	}
	for _, id := range []string{"cccc", "", "cccc000000000001"} {
		if _, err := r.LoadPoint(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("LoadPoint(%q): %v, want ErrNotFound", id, err)
		}
	}
	if err := r.DeletePoint("aaaa000000000002"); err != nil {
		t.Fatal(err)
	}
	if p, err := r.LoadPoint("aaaa"); err != nil || p.ID != "aaaa000000000001" {
		t.Errorf("prefix after delete: %v, %v", p, err)
	}
	if err := r.DeletePoint("aaaa000000000002"); err == nil {
		t.Error("deleting a deleted point succeeded")
	}
}

func TestPointsSortedByTime(t *testing.T) {
	r := newTestRepo(t, false)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, off := range []int{3, 1, 2, 1} {
		s, err := r.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		p := &RestorePoint{ID: fmt.Sprintf("%016x", 10-i), VM: "vm", Time: base.Add(time.Duration(off) * time.Hour)}
		if err := s.Commit(p); err != nil {
			t.Fatal(err)
		}
	}
	pts, err := r.Points()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pts {
		got = append(got, p.ID[12:])
	}
	// Times 1h (IDs 9 and 7, by ID), 2h (8), 3h (10 = "000a").
	if want := []string{"0007", "0009", "0008", "000a"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Points order %v, want %v", got, want)
	}
}

// blobsOf lists the data blocks of img with their IDs in r.
func blobsOf(r *Repository, img []byte) map[ID][]byte {
	m := make(map[ID][]byte)
	for off := 0; off < len(img); off += testBlockSize {
		b := img[off:min(off+testBlockSize, len(img))]
		if !allZero(b) {
			m[r.Hasher().Sum(b)] = b
		}
	}
	return m
}

// TestSessionSeesEarlierBlobs: a session finds what an earlier session
// stored, whether or not that session's packs were merged into the index.
func TestSessionSeesEarlierBlobs(t *testing.T) {
	r1 := newTestRepo(t, true)
	r2 := reopen(t, r1)
	img := imageFromSeeds(seedRange(500, 300), 0) // ~1.2 MiB: more than one pack

	s1, err := r1.NewSession() // creates the index
	if err != nil {
		t.Fatal(err)
	}
	// Another process reads the index all along: the commit cannot merge.
	hold, err := openIndex(r2.indexDir(), true)
	if err != nil {
		t.Fatalf("open index read-only: %v", err)
	}
	locs := make(map[ID]Location)
	for id, b := range blobsOf(r1, img) {
		loc, isNew, err := s1.Store(BlobData, id, b)
		if err != nil || !isNew {
			t.Fatalf("Store: %v %v", isNew, err)
		}
		locs[id] = loc
	}
	if err := s1.Commit(&RestorePoint{VM: "vm"}); err != nil {
		t.Fatal(err)
	}
	if merged, _, err := r1.MergeIndex(); merged || err != nil {
		t.Fatalf("MergeIndex while the index is held read-only: merged=%v err=%v", merged, err)
	}
	if len(packIDs(t, r1)) < 2 {
		t.Fatalf("want at least 2 packs, got %d", len(packIDs(t, r1)))
	}

	s2, err := r2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if known, err := s2.ix.packs(); err != nil || len(known) != 0 {
		t.Fatalf("index should know no packs yet: %v, %v", known, err)
	}
	for id, want := range locs {
		if _, ok, _ := s2.ix.lookup(id); ok {
			t.Fatal("blob is in the index although no merge happened")
		}
		got, ok, err := s2.Find(id)
		if err != nil || !ok || got != want {
			t.Fatalf("unmerged Find(%s) = %v, %v, %v; want %v", id.Short(), got, ok, err, want)
		}
		if !s2.Live(got) {
			t.Fatal("blob of an existing pack is not Live")
		}
	}
	for id, b := range blobsOf(r2, img) {
		if _, isNew, err := s2.Store(BlobData, id, b); err != nil || isNew {
			t.Fatalf("Store of a known (unmerged) blob: isNew=%v err=%v", isNew, err)
		}
	}
	if blobs, _, _ := s2.Stored(); blobs != 0 {
		t.Fatalf("session stored %d blobs that the repository had", blobs)
	}
	s2.Abort()
	hold.close()

	// Now the next session merges, and finds everything through the index.
	s3, err := r2.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Abort()
	if len(s3.overlay) != 0 {
		t.Fatalf("%d blobs still unmerged after MergeIndex could run", len(s3.overlay))
	}
	for id, want := range locs {
		e, ok, err := s3.ix.lookup(id)
		if err != nil || !ok || e.Location != want || e.Type != BlobData {
			t.Fatalf("index lookup(%s) = %+v, %v, %v", id.Short(), e, ok, err)
		}
		if got, ok, err := s3.Find(id); err != nil || !ok || got != want {
			t.Fatalf("merged Find(%s) = %v, %v, %v", id.Short(), got, ok, err)
		}
	}
	if _, ok, err := s3.Find(r2.Hasher().Sum([]byte("never stored"))); ok || err != nil {
		t.Fatalf("Find of an unknown blob: %v, %v", ok, err)
	}
	assertIndexMatchesPacks(t, r1)
}

// TestSessionLive: blocks in packs written after the session started are
// not Live (they may be gone by the time the point is committed).
func TestSessionLive(t *testing.T) {
	r := newTestRepo(t, false)
	p := commitPoint(t, r, "vm", diskImage{name: "d", img: imageFromSeeds([]uint64{1, 2}, 0)})
	s, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	old := blockEntry(t, r, p, "d", 0)
	if !s.Live(old.Location) {
		t.Error("location in an existing pack is not Live")
	}
	b := blockData(3, testBlockSize)
	loc, isNew, err := s.Store(BlobData, r.Hasher().Sum(b), b)
	if err != nil || !isNew {
		t.Fatal(err, isNew)
	}
	if s.Live(loc) {
		t.Error("location in the session's own new pack reported Live")
	}
	if s.Live(Location{Pack: PackID{1, 2, 3}}) {
		t.Error("unknown pack reported Live")
	}
}

// TestConcurrentSessions: two processes (two handles) back up at the same
// time, sharing some blocks; both points are complete and check passes.
func TestConcurrentSessions(t *testing.T) {
	r1 := newTestRepo(t, true)
	commitPoint(t, r1, "seed", diskImage{name: "d", img: imageFromSeeds([]uint64{9000}, 0)}) // creates the index
	r2 := reopen(t, r1)
	shared := seedRange(1, 150)
	imgs := [][]byte{
		imageFromSeeds(append(seedRange(10000, 200), shared...), 0),
		imageFromSeeds(append(shared, seedRange(20000, 200)...), 123),
	}
	handles := []*Repository{r1, r2}
	var started, wg sync.WaitGroup
	started.Add(2)
	points := make([]*RestorePoint, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := handles[i]
			s, err := r.NewSession()
			started.Done()
			if err != nil {
				errs[i] = err
				return
			}
			started.Wait() // both sessions are open before either writes
			p := &RestorePoint{VM: fmt.Sprintf("vm%d", i)}
			d, err := storeDiskErr(s, "sda", imgs[i], testTableSize)
			if err != nil {
				s.Abort()
				errs[i] = err
				return
			}
			p.Disks = []Disk{d}
			errs[i] = s.Commit(p)
			points[i] = p
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	r3 := reopen(t, r1)
	for i, p := range points {
		assertDisk(t, r3, p.ID, "sda", imgs[i])
	}
	pts, err := r3.Points()
	if err != nil || len(pts) != 3 {
		t.Fatalf("Points: %d, %v", len(pts), err)
	}
	checkOK(t, r3, true)
	if merged, _, err := r3.MergeIndex(); !merged || err != nil {
		t.Fatalf("MergeIndex: %v %v", merged, err)
	}
	assertIndexMatchesPacks(t, r3)
	// Both sessions' blocks are now known to a new session.
	s, err := r3.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	for _, img := range imgs {
		for id := range blobsOf(r3, img) {
			if _, ok, err := s.Find(id); !ok || err != nil {
				t.Fatalf("block %s not found after concurrent sessions: %v", id.Short(), err)
			}
		}
	}
}

// TestCommitMergesFromMemory: the merge at commit records the session's own
// packs from what it wrote, without reading their trailers back, and gives
// the same index as reading them: every blob at its place, every pack at its
// size, a blob stored in a table pack as well as data blobs.
func TestCommitMergesFromMemory(t *testing.T) {
	r := newTestRepo(t, true)
	img := imageFromSeeds(seedRange(900, 300), 0) // several 1 MiB packs
	p := commitPoint(t, r, "vm", diskImage{name: "vda", img: img})
	if n := len(packIDs(t, r)); n < 2 {
		t.Fatalf("want at least 2 packs, got %d", n)
	}
	assertIndexMatchesPacks(t, r)
	_, blobs := indexState(t, r)
	for id := range blobsOf(r, img) {
		if e, ok := blobs[id]; !ok || e.Type != BlobData {
			t.Fatalf("blob %s: index record %+v, %v", id.Short(), e, ok)
		}
	}
	for _, tr := range p.Disks[0].Tables {
		if e, ok := blobs[tr.ID]; !ok || e.Type != BlobTable || e.Pack != tr.Pack || e.Offset != tr.Offset {
			t.Fatalf("table %d: index record %+v, %v; want pack %s offset %d", tr.Index, e, ok, tr.Pack, tr.Offset)
		}
	}
}
