package openstack

import (
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/openstack"
)

// TestRestoreThroughputFigure measures restoring a 4 GiB volume of
// incompressible data through the Glance path, and cairn's own share of
// the time, against reference runs side by side:
//   - cairn alone: the repository streamed to io.Discard;
//   - the cloud's upload alone: the same bytes uploaded to Glance from a
//     plain file by the same client;
//
// Not part of `make test` (minutes, ~20 GB of disk): CAIRN_BENCH=1.
func TestRestoreThroughputFigure(t *testing.T) {
	if os.Getenv("CAIRN_BENCH") != "1" {
		t.Skip("figure, not a test: set CAIRN_BENCH=1")
	}
	const size = 4 << 30
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	dir := t.TempDir()
	img := filepath.Join(dir, "big.raw")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	buf := make([]byte, 8<<20)
	for off := 0; off < size; off += len(buf) {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		f.Write(buf)
	}
	f.Close()
	r := rsRepo(t)
	p := rsImagePoint(t, r, "cairn-bench", ingest.DiskSpec{Name: "vda", Path: img})
	ctx := context.Background()

	// reference 1: cairn's own work alone
	dr, _ := r.OpenDisk(p, "vda", 1)
	t0 := time.Now()
	if err := openstack.StreamDiskForBench(ctx, dr, io.Discard); err != nil {
		t.Fatal(err)
	}
	cairnAlone := time.Since(t0)

	// reference 2: Glance upload of the same bytes from a file
	t0 = time.Now()
	id, err := openstack.UploadFileForBench(ctx, cl, img)
	if err != nil {
		t.Fatal(err)
	}
	uploadRef := time.Since(t0)
	a.do("DELETE", "image", "images/"+id, nil, nil)

	// the restore
	t0 = time.Now()
	res, err := openstack.RestoreVolume(ctx, cl, r, p, "vda", openstack.RestoreVolumeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(t0)
	defer a.volumeGone(res.Volumes[0].ID)
	up, vfi := res.Timings["upload"], res.Timings["volume_from_image"]
	gib := float64(size) / (1 << 30)
	t.Logf("restore of %.0f GiB through Glance: %.1f s, %.0f MB/s", gib, total.Seconds(), size/total.Seconds()/1e6)
	t.Logf("  upload streamed from the repository: %.1f s (%.0f MB/s); the same upload from a plain file: %.1f s (%.0f MB/s)",
		up, size/up/1e6, uploadRef.Seconds(), size/uploadRef.Seconds()/1e6)
	t.Logf("  Cinder volume from image (the cloud's copy): %.1f s", vfi)
	t.Logf("  cairn alone (repository -> /dev/null): %.1f s (%.0f MB/s)", cairnAlone.Seconds(), size/cairnAlone.Seconds()/1e6)
	t.Logf("  cairn's own share: upload overhead vs. plain file %.1f s = %.1f%% of the restore; cairn's work if not overlapped: %.1f%%",
		up-uploadRef.Seconds(), 100*(up-uploadRef.Seconds())/total.Seconds(), 100*cairnAlone.Seconds()/total.Seconds())
}
