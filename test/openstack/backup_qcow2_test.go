package openstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
)

// TestBackupEphemeralQcow2: an image-backed server built from a qcow2
// image. Nova's snapshot of it is a qcow2 image too (the test cloud's virt
// driver uploads the base image, in its format), which a streamed
// download cannot read: cairn turns it into a temporary volume (Cinder
// converts it to raw) and reads that volume's raw upload. The restore
// point's root disk must start with exactly the raw content the qcow2 was
// made from, be zeros after it (the volume is whole GiB, at least the
// flavor's disk), and nothing may be left behind.
func TestBackupEphemeralQcow2(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	sfx := rsSuffix()
	dir := t.TempDir()
	const rawSize = 96 << 20
	raw := rsDiskImage(t, dir, "root", rawSize, 77, 0, 40<<20, rawSize-(4<<20))
	rawSHA := fileSHA(t, raw)
	qcow := filepath.Join(dir, "root.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, out)
	}
	var im struct{ ID string }
	a.must("POST", "image", "images", map[string]any{"name": "bk-qcow-" + sfx, "disk_format": "qcow2", "container_format": "bare"}, &im)
	t.Cleanup(func() { a.do("DELETE", "image", "images/"+im.ID, nil, nil) })
	f, err := os.Open(qcow)
	if err != nil {
		t.Fatal(err)
	}
	if err := imagedata.Upload(context.Background(), cl.Image, im.ID, f).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a.wait("qcow2 image active", 3*time.Minute, func() (bool, error) {
		var b struct{ Status string }
		err := a.do("GET", "image", "images/"+im.ID, nil, &b)
		return b.Status == "active", err
	})
	srvID := createServer(t, a, map[string]any{"name": "bk-qcow-" + sfx, "flavorRef": flavorID(t, a, "cairn.tiny"),
		"imageRef": im.ID, "networks": "none"})
	watched := map[string]bool{srvID: true}
	repoDir, journal := bkRepo(t)
	before := a.leakSet()

	res := backupServer(t, repoDir, journal, srvID)
	if res.Method != ops.MethodNovaImage || res.Summary == nil {
		t.Errorf("result %+v; want a backup via %s", res, ops.MethodNovaImage)
	}
	noLeaks(t, a, before, watched)
	journalEmpty(t, journal)

	r, p, def := loadPoint(t, repoDir, res.PointID)
	if len(def.Disks) != 1 || def.Disks[0].ImageID != im.ID {
		t.Fatalf("disks %+v, want the root disk from image %s", def.Disks, im.ID)
	}
	dr, err := r.OpenDisk(p, def.Disks[0].Name, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	size := dr.Size()
	if size < rawSize || size%(1<<30) != 0 {
		t.Fatalf("root disk holds %d bytes, want whole GiB of at least the image's %d", size, int64(rawSize))
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(dr, 0, rawSize)); err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != rawSHA {
		t.Errorf("root disk's first %d bytes: sha256 %s, want the qcow2's raw content %s", int64(rawSize), got, rawSHA)
	}
	zero := make([]byte, 4<<20)
	buf := make([]byte, len(zero))
	for off := int64(rawSize); off < size; off += int64(len(buf)) {
		n, err := dr.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], zero[:n]) {
			t.Fatalf("root disk is not zero after the image's content, at offset %d", off)
		}
	}
	t.Logf("root disk: %d bytes (image virtual size %d), timings %v", size, int64(rawSize), res.Timings)
}
