package openstack

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
)

// TestBackupThroughputFigure (CAIRN_BENCH=1): backup of a 4 GiB volume of
// random bytes through the Glance path, after a reference run of the same
// cloud steps done directly (snapshot, volume from snapshot, upload to
// image, download hashed and discarded). cairn's own share is its end to
// end time less what it waited for the cloud (its own timings) and less
// the bare download; the reference run is printed beside it.
func TestBackupThroughputFigure(t *testing.T) {
	if os.Getenv("CAIRN_BENCH") != "1" {
		t.Skip("throughput figure: set CAIRN_BENCH=1 (several minutes, 4 GiB)")
	}
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	const size = 4 << 30
	sfx := rsSuffix()
	var out struct {
		Volume struct{ ID string } `json:"volume"`
	}
	a.must("POST", "volume", "volumes", map[string]any{"volume": map[string]any{"name": "bk-bench-" + sfx, "size": 4, "volume_type": "rbd"}}, &out)
	vol := out.Volume.ID
	t.Cleanup(func() { a.volumeGone(vol) })
	a.wait("volume available", 5*time.Minute, func() (bool, error) { st, err := a.volumeStatus(vol); return st == "available", err })
	var offs []int64
	for o := int64(0); o < size; o += 4 << 20 {
		offs = append(offs, o)
	}
	img := rsDiskImage(t, t.TempDir(), "bench", size, 42, offs...)
	rbdWrite(t, vol, img)
	os.Remove(img)
	volumeAction(t, a, vol, map[string]any{"os-set_bootable": map[string]any{"bootable": true}})
	srvID := createServer(t, a, map[string]any{"name": "bk-bench-" + sfx, "flavorRef": flavorID(t, a, "cairn.tiny"), "networks": "none",
		"block_device_mapping_v2": []map[string]any{{"boot_index": 0, "uuid": vol, "source_type": "volume", "destination_type": "volume"}}})

	// Reference: the cloud's steps alone.
	ref := map[string]time.Duration{}
	step := func(name string, f func()) { s := time.Now(); f(); ref[name] = time.Since(s) }
	var snap, clone, image string
	step("snapshot", func() {
		var o struct {
			Snapshot struct{ ID string } `json:"snapshot"`
		}
		a.must("POST", "volume", "snapshots", map[string]any{"snapshot": map[string]any{"volume_id": vol, "force": true, "name": "bk-bench-ref"}}, &o)
		snap = o.Snapshot.ID
		a.wait("snapshot", 10*time.Minute, func() (bool, error) {
			var s struct {
				Snapshot struct{ Status string } `json:"snapshot"`
			}
			err := a.do("GET", "volume", "snapshots/"+snap, nil, &s)
			return s.Snapshot.Status == "available", err
		})
	})
	step("clone", func() {
		a.must("POST", "volume", "volumes", map[string]any{"volume": map[string]any{"name": "bk-bench-ref", "size": 4, "snapshot_id": snap}}, &out)
		clone = out.Volume.ID
		a.wait("clone", 10*time.Minute, func() (bool, error) { st, err := a.volumeStatus(clone); return st == "available", err })
	})
	step("upload", func() {
		var o struct {
			U struct {
				ImageID string `json:"image_id"`
			} `json:"os-volume_upload_image"`
		}
		a.must("POST", "volume", "volumes/"+clone+"/action", map[string]any{"os-volume_upload_image": map[string]any{"image_name": "bk-bench-ref", "disk_format": "raw", "container_format": "bare"}}, &o)
		image = o.U.ImageID
		a.wait("image", 30*time.Minute, func() (bool, error) {
			var im struct{ Status string }
			err := a.do("GET", "image", "images/"+image, nil, &im)
			return im.Status == "active", err
		})
		a.wait("clone available", 10*time.Minute, func() (bool, error) { st, err := a.volumeStatus(clone); return st == "available", err })
	})
	step("download", func() {
		res := imagedata.Download(context.Background(), cl.Image, image)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		h := sha256.New()
		n, err := io.Copy(h, res.Body)
		res.Body.Close()
		if err != nil || n != size {
			t.Fatalf("download: %d bytes, %v", n, err)
		}
	})
	a.do("DELETE", "image", "images/"+image, nil, nil)
	a.volumeGone(clone)
	a.do("DELETE", "volume", "snapshots/"+snap, nil, nil)
	var refTotal time.Duration
	for _, d := range ref {
		refTotal += d
	}

	repoDir, journal := bkRepo(t)
	start := time.Now()
	res := backupServer(t, repoDir, journal, srvID, "--max-transfers", "1")
	total := time.Since(start)
	sec := func(k string) time.Duration { return time.Duration(res.Timings[k] * float64(time.Second)) }
	mb := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	// The cloud's share of cairn's run is what cairn waited for, as it
	// measured it in the same run (the cloud is shared, so the reference
	// run's steps may take longer or shorter), plus the bare download at
	// the reference rate. The rest is cairn's own: inspecting, streaming
	// beyond the bare download (verify, hash, compress, store), process
	// start, repository open and commit, deleting the temporaries.
	cloud := sec("snapshot") + sec("clone") + sec("upload")
	stream := sec("ingest") - sec("ingest_wait")
	own := total - cloud - ref["download"]
	fig := fmt.Sprintf("FIGURE backup of a 4 GiB volume through Glance: %.1f s end to end = %.0f MB/s; cairn's own share %.1f s (%.0f%%), the cloud's %.1f s\n"+
		"  cloud, as cairn waited for it: snapshot %.1f s, clone %.1f s, upload %.1f s; bare download+sha256 of the same image %.1f s (%.0f MB/s, reference run)\n"+
		"  cairn: inspect %.1f s, streaming (download, verify, hash, compress, store) %.1f s = %.0f MB/s, i.e. %.1f s beyond the bare download; start, commit and cleanup %.1f s; new %d bytes, stored %d\n"+
		"  reference run of the cloud steps alone, just before: snapshot %.1f s, clone %.1f s, upload %.1f s, download %.1f s = %.1f s (%.0f MB/s)",
		total.Seconds(), mb(total), own.Seconds(), 100*own.Seconds()/total.Seconds(), (cloud + ref["download"]).Seconds(),
		sec("snapshot").Seconds(), sec("clone").Seconds(), sec("upload").Seconds(), ref["download"].Seconds(), mb(ref["download"]),
		sec("inspect").Seconds(), stream.Seconds(), mb(stream), (stream - ref["download"]).Seconds(),
		(total - sec("inspect") - sec("quota") - sec("snapshot") - sec("transfer")).Seconds(), res.Summary.NewBytes, res.Summary.StoredBytes,
		ref["snapshot"].Seconds(), ref["clone"].Seconds(), ref["upload"].Seconds(), ref["download"].Seconds(), refTotal.Seconds(), mb(refTotal))
	t.Log(fig)
	fmt.Println(fig)
}
