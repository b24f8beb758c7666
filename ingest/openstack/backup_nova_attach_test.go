package openstack

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// hostRoot makes a fake host tree with the given files and points
// sysRoot at it for the test.
func hostRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := sysRoot
	sysRoot = root
	t.Cleanup(func() { sysRoot = old })
	return root
}

func TestSelfCandidates(t *testing.T) {
	hostRoot(t, map[string]string{
		"sys/class/dmi/id/product_uuid":  "4C4C4544-0031-3210-8052-B2C04F4E3132\n",
		"var/lib/cloud/data/instance-id": "0f3b7a4e-8f1a-4c2d-9a57-5d7d1a2b3c4d\n",
	})
	got := selfCandidates(sysRoot)
	want := []string{"4c4c4544-0031-3210-8052-b2c04f4e3132", "44454c4c-3100-1032-8052-b2c04f4e3132", "0f3b7a4e-8f1a-4c2d-9a57-5d7d1a2b3c4d"}
	if len(got) != len(want) {
		t.Fatalf("candidates %+v, want %v", got, want)
	}
	for i, c := range got {
		if c.ID != want[i] || c.Source == "" {
			t.Errorf("candidate %d: %+v, want %s", i, c, want[i])
		}
	}
	// Firmware without a UUID, a non-OpenStack cloud-init id: nothing.
	hostRoot(t, map[string]string{
		"sys/class/dmi/id/product_uuid":  "00000000-0000-0000-0000-000000000000",
		"var/lib/cloud/data/instance-id": "i-0123456789abcdef0",
	})
	if got := selfCandidates(sysRoot); len(got) != 0 {
		t.Errorf("candidates %+v, want none", got)
	}
}

func TestResolveAttachHost(t *testing.T) {
	const (
		mine  = "11111111-2222-3333-4444-555555555555"
		other = "22222222-2222-3333-4444-555555555555"
		off   = "33333333-2222-3333-4444-555555555555"
		none  = "44444444-2222-3333-4444-555555555555"
	)
	f := newBkFake(t)
	f.hosts = map[string][2]string{mine: {"p1", "ACTIVE"}, other: {"p2", "ACTIVE"}, off: {"p1", "SHUTOFF"}}
	cl, err := Connect(context.Background(), f.config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	resolve := func(to string, uuid string) (*attachHost, string, error) {
		files := map[string]string{}
		if uuid != "" {
			files["sys/class/dmi/id/product_uuid"] = strings.ToUpper(uuid)
		}
		hostRoot(t, files)
		return cl.resolveAttachHost(ctx, to)
	}
	for _, c := range []struct {
		to, uuid string
		host     string // want a Nova host with this id ("": Cinder host attachment)
		err, why string // want an error containing err, or a reason containing why
	}{
		{to: AttachNone, uuid: mine, why: "--attach-to-server none"},
		{to: mine, host: mine},
		{to: none, err: "no such server in this cloud"},
		{to: other, err: "is in project p2"},
		{to: off, err: "is SHUTOFF, not ACTIVE"},
		{to: AttachSelf, uuid: mine, host: mine, why: "SMBIOS"},
		{to: AttachSelf, uuid: none, err: "this host is not a Nova server of this cloud"},
		{to: AttachSelf, err: "no SMBIOS system UUID"},
		{to: AttachSelf, uuid: other, err: "is in project p2"},
		// auto: a Nova attachment only when the cloud confirms this host
		{to: AttachAuto, uuid: mine, host: mine, why: "SMBIOS"},
		{to: AttachAuto, uuid: none, why: "Cinder host attachment (no server"},
		{to: AttachAuto, uuid: other, why: "is in project p2"},
		{to: AttachAuto, uuid: off, why: "SHUTOFF"},
		{to: AttachAuto, why: "no SMBIOS system UUID"},
	} {
		h, why, err := resolve(c.to, c.uuid)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q on %q: error %v, want one saying %q", c.to, c.uuid, err, c.err)
			}
		case err != nil:
			t.Errorf("%q on %q: %v", c.to, c.uuid, err)
		case (h == nil) != (c.host == "") || (h != nil && h.ID != c.host):
			t.Errorf("%q on %q: host %+v (%s), want %q", c.to, c.uuid, h, why, c.host)
		case !strings.Contains(why, c.why):
			t.Errorf("%q on %q: reason %q, want it to say %q", c.to, c.uuid, why, c.why)
		}
	}
}

func TestFindLocalDisk(t *testing.T) {
	const vol = "bca3745a-233b-4009-b39a-91976123b90b"
	old := isBlockDevice
	isBlockDevice = func(fi os.FileInfo) bool { return fi.Mode().IsRegular() } // stand-ins for devices
	t.Cleanup(func() { isBlockDevice = old })
	byID := t.TempDir()
	t.Setenv("CAIRN_DISK_BY_ID_DIR", byID)
	root := hostRoot(t, map[string]string{"dev/vdc": "", "dev/sdb": "", "sys/block/vdb/serial": "something-else"})
	oldPoll := devicePoll
	devicePoll = 10 * time.Millisecond
	t.Cleanup(func() { devicePoll = oldPoll })

	// Nothing yet: the error names every place looked at.
	_, _, err := waitLocalDisk(context.Background(), vol, 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "virtio-bca3745a-233b-4009-b") || !strings.Contains(err.Error(), "scsi-0QEMU_QEMU_HARDDISK_"+vol) ||
		!strings.Contains(err.Error(), byID) || !strings.Contains(err.Error(), "serial bca3745a-233b-4009-b") {
		t.Errorf("error %v does not say what was looked for", err)
	}
	// A virtio disk's serial in sysfs (no udev links).
	os.MkdirAll(filepath.Join(root, "sys/block/vdc"), 0o755)
	os.WriteFile(filepath.Join(root, "sys/block/vdc/serial"), []byte(vol[:20]+"\n"), 0o644)
	if dev, _, err := waitLocalDisk(context.Background(), vol, time.Second); err != nil || dev != filepath.Join(root, "dev/vdc") {
		t.Errorf("by serial: %q %v, want %s", dev, err, filepath.Join(root, "dev/vdc"))
	}
	// The by-id link wins, followed to the device; a partition's link is not the disk.
	os.Symlink(filepath.Join(root, "dev/vdc"), filepath.Join(byID, "virtio-"+vol[:20]+"-part1"))
	os.Symlink(filepath.Join(root, "dev/sdb"), filepath.Join(byID, "scsi-0QEMU_QEMU_HARDDISK_"+vol))
	dev, via, err := waitLocalDisk(context.Background(), vol, time.Second)
	if err != nil || dev != filepath.Join(root, "dev/sdb") || via != filepath.Join(byID, "scsi-0QEMU_QEMU_HARDDISK_"+vol) {
		t.Errorf("by scsi id: %q via %q %v", dev, via, err)
	}
	// A link to something that is not a block device is not taken.
	isBlockDevice = old
	if dev, _, err := waitLocalDisk(context.Background(), vol, 30*time.Millisecond); err == nil {
		t.Errorf("a regular file %s was taken for the volume's block device", dev)
	}
}

// TestHeartbeat: while a run lives, every live temporary with an id gets
// its cairn_heartbeat refreshed (volumes and snapshots through Cinder's
// metadata, images through a Glance property); attachments carry none.
func TestHeartbeat(t *testing.T) {
	f := newBkFake(t)
	f.rootSnapshot = "queued" // serves Glance's version discovery
	cl, err := Connect(context.Background(), f.config())
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJournal(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tmp := range []Temp{{Kind: KindVolume, Name: "v", ID: "vol9"}, {Kind: KindSnapshot, Name: "s", ID: "snap9"},
		{Kind: KindImage, Name: "i", ID: "img9"}, {Kind: KindAttachment, Name: "a", ID: "att9"}, {Kind: KindVolume, Name: "no-id-yet"}} {
		j.Created(tmp)
	}
	old := HeartbeatInterval
	HeartbeatInterval = 20 * time.Millisecond
	t.Cleanup(func() { HeartbeatInterval = old })
	b := &backupRun{cl: cl, tm: &temps{cl: cl, j: j}}
	stop := b.heartbeat(context.Background())
	time.Sleep(150 * time.Millisecond)
	stop()
	f.mu.Lock()
	beats := strings.Join(f.beats, "\n")
	f.mu.Unlock()
	for _, want := range []string{"POST /volume/v3/p1/volumes/vol9/metadata {\"metadata\":{\"cairn_heartbeat\":\"",
		"POST /volume/v3/p1/snapshots/snap9/metadata {\"metadata\":{\"cairn_heartbeat\":\"",
		"PATCH /image/v2/images/img9 [{\"op\":\"add\",\"path\":\"/cairn_heartbeat\""} {
		if !strings.Contains(beats, want) {
			t.Errorf("no heartbeat %s in:\n%s", want, beats)
		}
	}
	if strings.Contains(beats, "att9") || strings.Contains(beats, "volumes//") {
		t.Errorf("heartbeat on an attachment or a temporary without id:\n%s", beats)
	}
	n := len(f.beats)
	time.Sleep(60 * time.Millisecond)
	if len(f.beats) != n {
		t.Errorf("heartbeats go on after stop")
	}
	j.Close()
}
