package repo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckHealthy(t *testing.T) {
	r := newTestRepo(t, true)
	img := imageFromSeeds(seedRange(1, 300), 0) // two packs
	commitPoint(t, r, "a", diskImage{name: "sda", img: img})
	commitPoint(t, r, "b", diskImage{name: "sda", img: img[:100*testBlockSize]}, diskImage{name: "sdb", img: imageFromSeeds([]uint64{0, 0, 5000}, 0)})
	var calls, lastDone, lastTotal int
	rep, err := r.Check(CheckOptions{ReadData: true, Progress: func(done, total int) { calls++; lastDone, lastTotal = done, total }})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Warnings) != 0 {
		t.Fatalf("errors %q warnings %q", rep.Errors, rep.Warnings)
	}
	packs := len(packIDs(t, r))
	// Point a: 300 blocks in 19 tables; b: 100 blocks in 7 tables, plus 1 block and 1 table.
	if rep.Points != 2 || rep.Packs != packs || packs < 2 || rep.Blobs != 300+19+100+7+2 {
		t.Errorf("report %+v (packs on disk %d)", rep, packs)
	}
	if rep.PacksRead != packs || rep.BytesRead != dirBytes(t, filepath.Join(r.Dir(), "packs")) {
		t.Errorf("read %d packs, %d bytes", rep.PacksRead, rep.BytesRead)
	}
	if calls != packs+1 || lastDone != packs || lastTotal != packs {
		t.Errorf("progress: %d calls, last %d/%d", calls, lastDone, lastTotal)
	}

	rep, err = r.Check(CheckOptions{ReadData: true, SubsetPercent: 1})
	if err != nil || !rep.OK() {
		t.Fatal(err, rep.Errors)
	}
	if rep.PacksRead != 1 {
		t.Errorf("1%% subset read %d packs, want 1", rep.PacksRead)
	}
	rep, err = r.Check(CheckOptions{})
	if err != nil || !rep.OK() || rep.PacksRead != 0 {
		t.Fatalf("Check without data: %v %+v", err, rep)
	}
}

// packOfBlock returns the path of the pack holding e.
func packOfBlock(r *Repository, e BlockEntry) string { return packPath(r.Dir(), e.Pack) }

func TestCorruptDataBlob(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			r := newTestRepo(t, enc)
			img := imageFromSeeds([]uint64{11, 12, 13, 14}, 0)
			p := commitPoint(t, r, "vm", diskImage{name: "sda", img: img})
			e := blockEntry(t, r, p, "sda", 2)
			flipByte(t, packOfBlock(r, e), int64(e.Offset)+int64(e.Length)/2)

			data, err := r.LoadBlob(BlobData, e.ID, e.Location)
			if !errors.Is(err, ErrCorrupt) || data != nil {
				t.Fatalf("LoadBlob of a damaged blob: %d bytes, %v", len(data), err)
			}
			want := "does not match its hash" // plain: the blob hash catches it
			if enc {
				want = "authentication failed"
			}
			if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), e.Pack.String()) {
				t.Errorf("error %q should say %q and name the pack", err, want)
			}

			dr, err := r.OpenDisk(p, "sda", 0)
			if err != nil {
				t.Fatal(err)
			}
			buf := bytes.Repeat([]byte{0xaa}, 2*testBlockSize)
			n, err := dr.ReadAt(buf, testBlockSize) // block 1 (good) then 2 (bad)
			if !errors.Is(err, ErrCorrupt) || n != testBlockSize {
				t.Fatalf("ReadAt over the damaged block = %d, %v", n, err)
			}
			if !bytes.Equal(buf[:n], img[testBlockSize:2*testBlockSize]) {
				t.Error("the good block before the damaged one is wrong")
			}
			if !bytes.Equal(buf[n:], bytes.Repeat([]byte{0xaa}, testBlockSize)) {
				t.Error("ReadAt wrote bytes of the damaged block into the buffer")
			}
			if !strings.Contains(err.Error(), p.ID) {
				t.Errorf("read error does not name the restore point: %v", err)
			}
			// The other blocks are unaffected.
			for _, b := range []int64{0, 1, 3} {
				got := make([]byte, testBlockSize)
				if _, err := dr.ReadAt(got, b*testBlockSize); err != nil || !bytes.Equal(got, img[b*testBlockSize:(b+1)*testBlockSize]) {
					t.Errorf("block %d: %v", b, err)
				}
			}

			rep, err := r.Check(CheckOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Errors) != 1 {
				t.Fatalf("Check --read-data: want 1 error, got %q", rep.Errors)
			}
			msg := rep.Errors[0]
			for _, s := range []string{p.ID, "disk sda block 2", e.Pack.String(), e.ID.Short(), "corrupt"} {
				if !strings.Contains(msg, s) {
					t.Errorf("check error %q does not mention %q", msg, s)
				}
			}
		})
	}
}

func TestCorruptUnusedBlob(t *testing.T) {
	// Damage in a blob no point uses is still reported, and says so.
	r := newTestRepo(t, false)
	s, err := r.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	b := blockData(99, testBlockSize)
	loc, _, err := s.Store(BlobData, r.Hasher().Sum(b), b)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(&RestorePoint{VM: "vm"}); err != nil {
		t.Fatal(err)
	}
	flipByte(t, packPath(r.Dir(), loc.Pack), int64(loc.Offset)+10)
	rep, err := r.Check(CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) != 1 || !strings.Contains(rep.Errors[0], "no restore point uses it") {
		t.Fatalf("errors %q", rep.Errors)
	}
}

func TestCorruptTable(t *testing.T) {
	r := newTestRepo(t, true)
	img := imageFromSeeds(seedRange(30, 40), 0) // 3 tables
	p := commitPoint(t, r, "vm", diskImage{name: "sda", img: img})
	ref := p.Disks[0].Tables[1]
	flipByte(t, packPath(r.Dir(), ref.Pack), int64(ref.Offset)+int64(ref.Length)-1)

	dr, err := r.OpenDisk(p, "sda", 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	if _, err := dr.ReadAt(buf, 0); err != nil {
		t.Fatalf("table 0 is intact: %v", err)
	}
	_, err = dr.ReadAt(buf, int64(testTableSize)*testBlockSize+5)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "block table 1") {
		t.Fatalf("read through a damaged table: %v", err)
	}
	rep, err := r.Check(CheckOptions{}) // tables are verified even without --read-data
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !containsAny(rep.Errors, p.ID) || !containsAny(rep.Errors, "block table 1") {
		t.Fatalf("Check: errors %q", rep.Errors)
	}
}

func TestTruncatedPack(t *testing.T) {
	r := newTestRepo(t, false)
	img := imageFromSeeds(seedRange(60, 20), 0)
	p := commitPoint(t, r, "vm", diskImage{name: "sda", img: img})
	ids := packIDs(t, r)
	if len(ids) != 1 {
		t.Fatalf("%d packs", len(ids))
	}
	path := packPath(r.Dir(), ids[0])
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, st.Size()/2); err != nil {
		t.Fatal(err)
	}
	rep, err := r.Check(CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !containsAny(rep.Errors, ids[0].String()) || !containsAny(rep.Errors, "truncated") {
		t.Fatalf("Check of a truncated pack: errors %q", rep.Errors)
	}
	// Blocks past the cut cannot be read; the error is ErrCorrupt.
	dr, err := r.OpenDisk(p, "sda", 0)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(img))
	if _, err := dr.ReadAt(buf, 0); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("reading a truncated pack: %v", err)
	}
	// Prune refuses to work on a repository with an unreadable pack.
	before := repoFiles(t, r.Dir(), "index", "locks", "lock")
	if _, err := r.Prune(PruneOptions{}); err == nil {
		t.Fatal("Prune ran over a truncated pack")
	}
	if after := repoFiles(t, r.Dir(), "index", "locks", "lock"); fmt.Sprint(before) != fmt.Sprint(after) {
		t.Fatal("failed Prune changed the repository")
	}
}

func TestMissingPack(t *testing.T) {
	r := newTestRepo(t, false)
	a := imageFromSeeds(seedRange(100, 10), 0)
	b := imageFromSeeds(seedRange(200, 10), 0)
	pa := commitPoint(t, r, "a", diskImage{name: "sda", img: a})
	pb := commitPoint(t, r, "b", diskImage{name: "sda", img: b})
	if _, _, err := r.MergeIndex(); err != nil {
		t.Fatal(err)
	}
	// Point c has A's blocks (deduplicated: in A's pack) but tables of its
	// own (another table size), so its tables survive and only its data
	// blocks are missing.
	pc := commitPoint(t, r, "c", diskImage{name: "sda", img: a, ts: 8})
	gone := blockEntry(t, r, pa, "sda", 0).Pack
	if blockEntry(t, r, pb, "sda", 0).Pack == gone || blockEntry(t, r, pc, "sda", 0).Pack != gone || pc.Disks[0].Tables[0].Pack == gone {
		t.Fatal("scenario: unexpected pack layout")
	}
	if err := os.Remove(packPath(r.Dir(), gone)); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, r) // no cached descriptor of the deleted pack
	rep, err := r2.Check(CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatal("Check passed with a pack missing")
	}
	var missing, missingData, index bool
	for _, e := range rep.Errors {
		if strings.Contains(e, pa.ID) && strings.Contains(e, "pack "+gone.String()+" is missing") {
			missing = true
		}
		if strings.Contains(e, "restore point "+pc.ID+" disk sda block 9: pack "+gone.String()+" is missing") {
			missingData = true
		}
		if strings.Contains(e, "index") && strings.Contains(e, "missing packs") {
			index = true
		}
		if strings.Contains(e, pb.ID) {
			t.Errorf("intact point %s reported: %s", pb.ID, e)
		}
	}
	if !missing || !missingData || !index {
		t.Fatalf("errors %q: want the missing pack named for points %s and %s (block 9), and the stale index", rep.Errors, pa.ID, pc.ID)
	}
	lp, err := r2.LoadPoint(pa.ID)
	if err != nil {
		t.Fatal(err)
	}
	dr, err := r2.OpenDisk(lp, "sda", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dr.ReadAt(make([]byte, 10), 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("read from a missing pack: %v", err)
	}
	assertDisk(t, r2, pb.ID, "sda", b)
}

func TestCorruptPointFile(t *testing.T) {
	for _, enc := range []bool{false, true} {
		t.Run(fmt.Sprintf("encrypted=%v", enc), func(t *testing.T) {
			r := newTestRepo(t, enc)
			p := commitPoint(t, r, "vm", diskImage{name: "sda", img: imageFromSeeds([]uint64{1}, 0)})
			path := r.pointPath(p.ID)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			damage := map[string][]byte{
				"truncated": orig[:len(orig)-5],
				"bad magic": append([]byte("CAIRNRP9"), orig[8:]...),
				"empty":     nil,
			}
			if enc {
				flipped := bytes.Clone(orig)
				flipped[len(flipped)/2] ^= 1
				damage["flipped byte"] = flipped
			}
			for name, raw := range damage {
				if err := os.WriteFile(path, raw, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := r.LoadPoint(p.ID); !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: LoadPoint = %v, want ErrCorrupt", name, err)
				}
			}
			// Points() and Check refuse / report; the point is named.
			if _, err := r.Points(); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Points with a damaged point: %v", err)
			}
			rep, err := r.Check(CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() || !containsAny(rep.Errors, p.ID) {
				t.Errorf("Check: %q", rep.Errors)
			}
			// A valid point file under another name is rejected: the ID is
			// bound to the content.
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			other := "0123456789abcdef"
			if err := os.WriteFile(r.pointPath(other), orig, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := r.LoadPoint(other); !errors.Is(err, ErrCorrupt) {
				t.Errorf("point copied under another ID: %v", err)
			}
			if _, err := r.LoadPoint(p.ID); err != nil {
				t.Errorf("restored point: %v", err)
			}
		})
	}
}

// writeRawPack puts a hand-made pack (unencrypted: plaintext trailer) into r.
func writeRawPack(t *testing.T, r *Repository, id PackID, blobArea, trailer []byte) {
	t.Helper()
	pack := append([]byte(packMagic), blobArea...)
	pack = append(pack, trailer...)
	pack = binary.LittleEndian.AppendUint32(pack, uint32(len(trailer)))
	pack = append(pack, packEndMagic...)
	path := packPath(r.Dir(), id)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pack, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHostileTrailer: an unencrypted pack whose trailer claims a blob at an
// offset that wraps around must be reported, not crash check or prune.
func TestHostileTrailer(t *testing.T) {
	r := newTestRepo(t, false)
	p := commitPoint(t, r, "vm", diskImage{name: "sda", img: imageFromSeeds([]uint64{1, 2}, 0)})
	bad := PackID{0xba, 0xd0}
	writeRawPack(t, r, bad, make([]byte, 64), oneEntryTrailer(1<<63-1, 10))
	rep, err := r.Check(CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || !containsAny(rep.Errors, bad.String()) {
		t.Fatalf("hostile trailer not reported: %q", rep.Errors)
	}
	if _, err := r.Prune(PruneOptions{}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("prune over a hostile trailer: %v", err)
	}
	if sr, err := r.RepairIndex(); err != nil || len(sr.Damaged) != 1 {
		t.Fatalf("repair: %+v %v", sr, err)
	}
	assertDisk(t, r, p.ID, "sda", imageFromSeeds([]uint64{1, 2}, 0))
}
