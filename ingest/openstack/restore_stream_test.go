package openstack

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

// restoreTestPoint backs up data as disk "vda" of a new repository.
func restoreTestPoint(t *testing.T, data []byte) (*repo.Repository, *repo.RestorePoint) {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.raw")
	if err := os.WriteFile(img, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(filepath.Join(dir, "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p, _, err := ingest.Backup(context.Background(), r, ingest.BackupOptions{VM: "vm1", Disks: []ingest.DiskSpec{{Name: "vda", Path: img}}})
	if err != nil {
		t.Fatal(err)
	}
	return r, p
}

// restoreTestData is random data with holes and zero runs, of an odd size.
func restoreTestData(size int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, size)
	for off := 0; off < size; off += 100_000 {
		if (off/100_000)%3 == 1 {
			continue // zeros
		}
		for i := off; i < min(off+100_000, size); i++ {
			data[i] = byte(rng.Uint32())
		}
	}
	return data
}

func TestRestoreStreamBytesAndSums(t *testing.T) {
	data := restoreTestData(9<<20 + 12345)
	r, p := restoreTestPoint(t, data)
	dr, err := r.OpenDisk(p, "vda", 1)
	if err != nil {
		t.Fatal(err)
	}
	prog := &ingest.Progress{}
	s := newRestoreStream(context.Background(), dr, 3, prog)
	var got bytes.Buffer
	// small reads exercise chunk boundaries
	if _, err := io.CopyBuffer(&got, struct{ io.Reader }{s}, make([]byte, 7777)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatal("streamed bytes differ from the disk")
	}
	if !s.Complete() || prog.Done.Load() != int64(len(data)) {
		t.Fatalf("complete=%v done=%d", s.Complete(), prog.Done.Load())
	}
	m, h := s.Sums()
	wm, wh := md5.Sum(data), sha512.Sum512(data)
	if m != hex.EncodeToString(wm[:]) || h != hex.EncodeToString(wh[:]) {
		t.Fatal("checksums differ")
	}
}

func TestRestoreStreamCancel(t *testing.T) {
	r, p := restoreTestPoint(t, restoreTestData(20<<20))
	dr, _ := r.OpenDisk(p, "vda", 1)
	ctx, cancel := context.WithCancel(context.Background())
	s := newRestoreStream(ctx, dr, 2, nil)
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(s, buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	var err error
	for err == nil {
		_, err = s.Read(buf)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("read after cancel: %v", err)
	}
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs after cancel")
	}
	if s.Complete() {
		t.Fatal("an interrupted stream claims to be complete")
	}
}

func TestRestoreStreamCorruptBlockIsAnError(t *testing.T) {
	data := restoreTestData(4 << 20)
	r, p := restoreTestPoint(t, data)
	// flip a byte in the middle of every pack: some block fails its hash
	packs, _ := filepath.Glob(filepath.Join(r.Dir(), "packs", "*", "*"))
	if len(packs) == 0 {
		packs, _ = filepath.Glob(filepath.Join(r.Dir(), "packs", "*"))
	}
	for _, pk := range packs {
		raw, err := os.ReadFile(pk)
		if err != nil || len(raw) < 1000 {
			continue
		}
		raw[len(raw)/3] ^= 0xff
		os.WriteFile(pk, raw, 0o600)
	}
	dr, _ := r.OpenDisk(p, "vda", 1)
	s := newRestoreStream(context.Background(), dr, 2, nil)
	defer s.Close()
	_, err := io.Copy(io.Discard, s)
	if err == nil {
		t.Fatal("a corrupt repository streamed without error")
	}
	if s.Complete() {
		t.Fatal("stream complete despite corruption")
	}
}

// applyRBDDiff is a reader of the "rbd diff v1" format, as rbd import-diff
// applies it, for the test.
func applyRBDDiff(t *testing.T, stream []byte) []byte {
	t.Helper()
	const hdr = "rbd diff v1\n"
	if !bytes.HasPrefix(stream, []byte(hdr)) {
		t.Fatal("no rbd diff v1 header")
	}
	b := stream[len(hdr):]
	var img []byte
	for len(b) > 0 {
		tag := b[0]
		b = b[1:]
		switch tag {
		case 's':
			img = make([]byte, binary.LittleEndian.Uint64(b))
			b = b[8:]
		case 'w':
			off, n := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
			copy(img[off:off+n], b[16:16+n])
			b = b[16+n:]
		case 'e':
			if len(b) != 0 {
				t.Fatalf("%d bytes after the end record", len(b))
			}
			return img
		default:
			t.Fatalf("unknown record %q", tag)
		}
	}
	t.Fatal("no end record")
	return nil
}

func TestRBDDiffStream(t *testing.T) {
	data := restoreTestData(6<<20 + 4096 + 17)
	r, p := restoreTestPoint(t, data)
	dr, _ := r.OpenDisk(p, "vda", 1)
	var out bytes.Buffer
	const volSize = 8 << 20
	if err := writeRBDDiff(context.Background(), dr, volSize, &out); err != nil {
		t.Fatal(err)
	}
	img := applyRBDDiff(t, out.Bytes())
	if len(img) != volSize {
		t.Fatalf("image size %d, want %d (the volume's, never smaller)", len(img), volSize)
	}
	if !bytes.Equal(img[:len(data)], data) || !bytes.Equal(img[len(data):], make([]byte, volSize-len(data))) {
		t.Fatal("diff applied to a zero image differs from the disk")
	}
	if out.Len() > len(data) {
		t.Fatalf("diff stream %d bytes for %d bytes of disk: zero blocks were sent", out.Len(), len(data))
	}
}

func TestWriteLocalPath(t *testing.T) {
	data := restoreTestData(3<<20 + 999)
	r, p := restoreTestPoint(t, data)
	dr, _ := r.OpenDisk(p, "vda", 1)
	target := filepath.Join(t.TempDir(), "volume-x")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(target, 4<<20)
	if err := writeLocalPath(context.Background(), dr, target); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(target)
	if !bytes.Equal(got[:len(data)], data) {
		t.Fatal("volume file differs from the disk")
	}
	if err := writeLocalPath(context.Background(), dr, filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("writing to an unreachable volume path succeeded")
	}
}

func TestNFSVolumePath(t *testing.T) {
	var ci connectionInfo
	ci.Data.Export, ci.Data.MountPointBase, ci.Data.Name = "127.0.0.1:/cinder-share", "/var/lib/x/mnt", "volume-1"
	sum := md5.Sum([]byte("127.0.0.1:/cinder-share"))
	if got, want := nfsVolumePath(ci), "/var/lib/x/mnt/"+hex.EncodeToString(sum[:])+"/volume-1"; got != want {
		t.Fatalf("got %s want %s", got, want)
	}
}

func TestRestoreUndoOrderAndTemporaries(t *testing.T) {
	var u restoreUndo
	var order []string
	rm := func(name string, err error) func(context.Context) error {
		return func(context.Context) error { order = append(order, name); return err }
	}
	u.add("keypair", "k", "k", false, rm("k", nil))
	u.add("image", "i", "i", true, rm("i", nil))
	u.add("volume", "v", "v", false, rm("v", errors.New("busy")))
	u.add("server", "s", "s", false, rm("s", nil))
	left, err := u.run(false, time.Minute)
	if len(order) != 1 || order[0] != "i" || err != nil || left != nil {
		t.Fatalf("temporaries only: ran %v, left %v, err %v", order, left, err)
	}
	order = nil
	left, err = u.run(true, time.Minute)
	if want := []string{"s", "v", "k"}; len(order) != 3 || order[0] != want[0] || order[1] != want[1] || order[2] != want[2] {
		t.Fatalf("removal order %v, want %v", order, want)
	}
	if err == nil || len(left) != 1 {
		t.Fatalf("a failed removal must be reported: left %v err %v", left, err)
	}
}

func TestParseNetworkChoice(t *testing.T) {
	for in, want := range map[string]NetworkChoice{
		"net1": {Network: "net1"}, "net1=10.0.0.5": {Network: "net1", FixedIP: "10.0.0.5"},
	} {
		got, err := ParseNetworkChoice(in)
		if err != nil || got != want {
			t.Fatalf("%q: %+v %v", in, got, err)
		}
	}
	if _, err := ParseNetworkChoice("=1.2.3.4"); err == nil {
		t.Fatal("empty network accepted")
	}
}

func TestConnectionInfoShapes(t *testing.T) {
	for _, raw := range []string{
		`{"driver_volume_type": "rbd", "name": "volumes/volume-1", "hosts": ["127.0.0.1"], "ports": ["6789"], "auth_enabled": false}`,
		`{"driver_volume_type": "rbd", "data": {"name": "volumes/volume-1", "hosts": ["127.0.0.1"], "ports": ["6789"]}}`,
	} {
		var ci connectionInfo
		if err := json.Unmarshal([]byte(raw), &ci); err != nil {
			t.Fatal(err)
		}
		if ci.DriverVolumeType != "rbd" || ci.Data.Name != "volumes/volume-1" || len(ci.Data.Hosts) != 1 || ci.Data.Ports[0] != "6789" {
			t.Fatalf("%s decoded as %+v", raw, ci)
		}
	}
}
