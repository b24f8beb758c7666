package openstack

import (
	"context"
	"testing"

	ops "github.com/cairn-backup/cairn/ingest/openstack"
	"github.com/cairn-backup/cairn/repo"
)

// restoreEphemeral restores the restore point of an image-backed server
// (TestBackupEphemeralRoot makes it) next to the original: the server
// comes back boot-from-volume, its root disk a bootable volume holding the
// base image's bytes, the attached volume a data volume holding its bytes.
// New MACs: the original server still holds its own.
func restoreEphemeral(t *testing.T, a api, r *repo.Repository, p *repo.RestorePoint, name, rootSHA string, rootSize int64, vol bkVolume) {
	t.Helper()
	res, err := ops.RestoreVM(context.Background(), a.cl, r, p, ops.RestoreVMOptions{Name: name, NewMAC: true, Note: func(s string) { t.Log(s) }})
	defer removeRestored(a, res)
	if err != nil {
		t.Fatalf("restore of the image-backed server's restore point: %v", err)
	}
	if res.Server == nil || res.Server.Status != "ACTIVE" || len(res.Volumes) != 2 {
		t.Fatalf("restore result %+v", res)
	}
	for _, v := range res.Volumes {
		var vb struct {
			Volume struct {
				Bootable string `json:"bootable"`
			} `json:"volume"`
		}
		a.must("GET", "volume", "volumes/"+v.ID, nil, &vb)
		want, n := vol.SHA, vol.Size
		if v.Bootable {
			want, n = rootSHA, rootSize
		}
		if got := rbdSHA(t, v.ID, n); got != want {
			t.Errorf("restored volume %s (disk %s, bootable %v): first %d bytes sha256 %s, want %s", v.ID, v.Disk, v.Bootable, n, got, want)
		}
		if (vb.Volume.Bootable == "true") != v.Bootable {
			t.Errorf("volume %s: Cinder says bootable %q, the restore %v", v.ID, vb.Volume.Bootable, v.Bootable)
		}
	}
	boot := 0
	for _, v := range res.Volumes {
		if v.Bootable {
			boot++
		}
	}
	if boot != 1 {
		t.Errorf("%d bootable volumes, want the root disk only: %+v", boot, res.Volumes)
	}
	var sb struct {
		Server struct {
			Image any `json:"image"`
			Vols  []struct {
				ID string `json:"id"`
			} `json:"os-extended-volumes:volumes_attached"`
		} `json:"server"`
	}
	a.must("GET", "compute", "servers/"+res.Server.ID, nil, &sb)
	if img, _ := sb.Server.Image.(string); img != "" || len(sb.Server.Vols) != 2 {
		t.Errorf("restored server: image %v, %d volumes; want boot from volume with both", sb.Server.Image, len(sb.Server.Vols))
	}
}
