package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/cairn-backup/cairn/ingest"
)

func TestParseURI(t *testing.T) {
	for _, c := range []struct {
		uri  string
		want Target
		err  string
	}{
		{uri: "qemu:///system", want: Target{Socket: defaultLibvirtSocket, Name: "qemu:///system"}},
		{uri: "qemu:///system?socket=/tmp/s", want: Target{Socket: "/tmp/s", Name: "qemu:///system"}},
		{uri: "qemu+unix:///session", want: Target{Socket: defaultLibvirtSocket, Name: "qemu:///session"}},
		{uri: "qemu+ssh://root@kvm3/system", want: Target{Remote: true, User: "root", Addr: "kvm3:22", Socket: defaultLibvirtSocket, Name: "qemu:///system"}},
		{uri: "qemu+ssh://bk@10.0.0.5:2222/system?keyfile=/k&no_verify=1&socket=/run/libvirt/libvirt-sock",
			want: Target{Remote: true, User: "bk", Addr: "10.0.0.5:2222", Socket: "/run/libvirt/libvirt-sock", KeyFile: "/k", NoVerify: true, Name: "qemu:///system"}},
		{uri: "qemu+ssh://[::1]:22/system", want: Target{Remote: true, Addr: "[::1]:22", Socket: defaultLibvirtSocket, Name: "qemu:///system"}},
		{uri: "xen:///system", err: "only the qemu driver"},
		{uri: "qemu+tls://h/system", err: "not supported"},
		{uri: "qemu://h/system", err: "needs a transport"},
		{uri: "qemu:///nope", err: "/system or /session"},
		{uri: "qemu+ssh:///system", err: "needs a host"},
		{uri: "qemu+ssh://u:pw@h/system", err: "passwords are not accepted"},
	} {
		got, err := ParseURI(c.uri)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want %q", c.uri, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.uri, err)
			continue
		}
		if c.want.Remote && c.want.User == "" {
			c.want.User = got.User // the current user
		}
		if got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.uri, got, c.want)
		}
	}
}

const sampleDomain = `<domain type='qemu' id='3'>
  <name>web1</name>
  <uuid>6a1f1b34-1c55-4c7e-9d0c-2b1a1e0e7f01</uuid>
  <memory unit='KiB'>65536</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/img/web1.qcow2'/>
      <backingStore type='file'><format type='qcow2'/><source file='/img/base.qcow2'/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/>
      <source dev='/dev/sdb'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/x.iso'/>
      <target dev='hdc' bus='ide'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source network='default'/>
    </interface>
  </devices>
</domain>`

func TestDomainDisksAndRedefine(t *testing.T) {
	var d libvirtxml.Domain
	if err := d.Unmarshal(sampleDomain); err != nil {
		t.Fatal(err)
	}
	disks, err := domainDisks(&d)
	if err != nil {
		t.Fatal(err)
	}
	want := []disk{{"vda", "/img/web1.qcow2", "qcow2"}, {"vdb", "/dev/sdb", "raw"}}
	if fmt.Sprint(disks) != fmt.Sprint(want) {
		t.Fatalf("disks %v, want %v", disks, want)
	}
	if !disks[0].checkpointable() || disks[1].checkpointable() {
		t.Fatal("only qcow2 disks carry checkpoints")
	}

	x, err := redefine(sampleDomain, RedefineOptions{Name: "web1-copy", NewIdent: true,
		Disks: map[string]string{"vda": "/pool/web1-copy-vda.raw", "vdb": "/pool/web1-copy-vdb.raw"}, Format: "raw"})
	if err != nil {
		t.Fatal(err)
	}
	var n libvirtxml.Domain
	if err := n.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	if n.Name != "web1-copy" || n.UUID != "" || n.ID != nil {
		t.Fatalf("identity not replaced: name %q uuid %q", n.Name, n.UUID)
	}
	if n.Devices.Interfaces[0].MAC != nil {
		t.Fatal("MAC address kept under a new identity")
	}
	nd, _ := domainDisks(&n)
	if fmt.Sprint(nd) != fmt.Sprint([]disk{{"vda", "/pool/web1-copy-vda.raw", "raw"}, {"vdb", "/pool/web1-copy-vdb.raw", "raw"}}) {
		t.Fatalf("disks after redefine: %v", nd)
	}
	if n.Devices.Disks[0].BackingStore != nil || n.Devices.Disks[1].Source.Block != nil {
		t.Fatal("old sources or backing chain kept")
	}
	if n.Devices.Disks[2].Source.File.File != "/iso/x.iso" {
		t.Fatal("cdrom changed")
	}

	same, err := redefine(sampleDomain, RedefineOptions{Disks: map[string]string{"vda": "/p/a.qcow2"}, Format: "qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	var s libvirtxml.Domain
	s.Unmarshal(same)
	if s.Name != "web1" || s.UUID != "6a1f1b34-1c55-4c7e-9d0c-2b1a1e0e7f01" || s.Devices.Interfaces[0].MAC.Address != "52:54:00:aa:bb:cc" {
		t.Fatal("identity changed without a new name")
	}
}

func TestBackupAndCheckpointXML(t *testing.T) {
	disks := []disk{{"vda", "/a.qcow2", "qcow2"}, {"vdb", "/b.raw", "raw"}}
	x, err := backupXML("/var/tmp/s.sock", disks, "cairn-1", map[string]bool{"vda": true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<domainbackup mode=\"pull\">", "<incremental>cairn-1</incremental>", `<server transport="unix" socket="/var/tmp/s.sock">`,
		`<disk type="file" name="vda" backup="yes" backupmode="incremental" incremental="cairn-1">`, `<scratch file="/var/tmp/s-vda.scratch.qcow2">`, `<disk type="file" name="vdb" backup="yes" backupmode="full"`} {
		if !strings.Contains(x, want) {
			t.Errorf("backup XML lacks %s:\n%s", want, x)
		}
	}
	full, _ := backupXML("/s", disks, "", nil)
	if strings.Contains(full, "incremental") || strings.Contains(full, "backupmode") {
		t.Errorf("full backup XML: %s", full)
	}
	c, err := checkpointXML("cairn-2", disks)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<name>cairn-2</name>", `<disk name="vda" checkpoint="bitmap">`, `<disk name="vdb" checkpoint="no">`} {
		if !strings.Contains(c, want) {
			t.Errorf("checkpoint XML lacks %s:\n%s", want, c)
		}
	}
}

// fakeExport serves a byte slice with scripted block status extents,
// answering at most maxExtents per request like a real server may.
type fakeExport struct {
	data       []byte
	status     map[string][][3]int64 // off, len, flags
	maxExtents int
	closed     bool
}

func (f *fakeExport) Size() int64 { return int64(len(f.data)) }
func (f *fakeExport) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(f.data)) {
		return 0, io.EOF
	}
	return copy(p, f.data[off:]), nil
}
func (f *fakeExport) Close() error { f.closed = true; return nil }
func (f *fakeExport) BlockStatus(mc string, off, length int64, fn func(off, length int64, flags uint32) error) error {
	n := 0
	for _, e := range f.status[mc] {
		if e[0]+e[1] <= off || e[0] >= off+length {
			continue
		}
		o := max(e[0], off)
		if err := fn(o, min(e[0]+e[1], off+length)-o, uint32(e[2])); err != nil {
			return err
		}
		if n++; n == f.maxExtents {
			return nil
		}
	}
	return nil
}

func TestExportSourceAndDirtyExtents(t *testing.T) {
	data := bytes.Repeat([]byte{9}, 1<<20)
	bitmap := "qemu:dirty-bitmap:backup-vda"
	f := &fakeExport{data: data, maxExtents: 1, status: map[string][][3]int64{
		ctxAllocation: {{0, 4096, 0}, {4096, 4096, 0}, {8192, 100000, 3}, {108192, 1000, 2}, {109192, 1<<20 - 109192, 0}},
		bitmap:        {{0, 65536, 1}, {65536, 65536, 1}, {131072, 65536, 0}, {196608, 1<<20 - 196608, 1}},
	}}
	src := newExportSource(f, "qcow2", func() (export, error) { return &fakeExport{data: data}, nil })
	var got []ingest.Extent
	if err := src.Extents(func(off, length int64) error { got = append(got, ingest.Extent{Off: off, Len: length}); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint([]ingest.Extent{{Off: 0, Len: 8192}, {Off: 109192, Len: 1<<20 - 109192}}) {
		t.Fatalf("data extents %v", got)
	}
	dirty, total, err := dirtyExtents(f, bitmap)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(dirty) != fmt.Sprint([]ingest.Extent{{Off: 0, Len: 131072}, {Off: 196608, Len: 1<<20 - 196608}}) || total != 131072+1<<20-196608 {
		t.Fatalf("dirty %v total %d", dirty, total)
	}
	// Concurrent readers get their own connections; all are closed.
	a, _ := src.get()
	b, _ := src.get()
	if a == b {
		t.Fatal("one connection handed out twice")
	}
	src.put(a)
	src.put(b)
	buf := make([]byte, 10)
	if n, err := src.ReadAt(buf, 5); n != 10 || err != nil || buf[0] != 9 {
		t.Fatalf("read %d %v", n, err)
	}
	src.Close()
	if !f.closed || !b.(*fakeExport).closed && !a.(*fakeExport).closed {
		t.Fatal("connections not closed")
	}
	// A server that skips a range is an error, not a silent gap.
	bad := &fakeExport{data: data, status: map[string][][3]int64{ctxAllocation: {{0, 4096, 0}, {8192, 1 << 20, 0}}}}
	if err := walkStatus(bad, ctxAllocation, func(int64, int64, uint32) error { return nil }); err == nil {
		t.Fatal("gap in block status accepted")
	}
}

func TestRetryTransient(t *testing.T) {
	calls := 0
	timeout := golibvirt.Error{Code: uint32(golibvirt.ErrOperationTimeout), Message: "Timed out during operation: cannot acquire state change lock"}
	err := retry(context.Background(), 2, func() error { calls++; return timeout })
	if calls != 2 || err == nil || !strings.Contains(err.Error(), "gave up after 2") {
		t.Fatalf("calls %d err %v", calls, err)
	}
	calls = 0
	perm := errors.New("domain not found")
	if err := retry(context.Background(), 3, func() error { calls++; return perm }); err != perm || calls != 1 {
		t.Fatalf("permanent error retried: %d %v", calls, err)
	}
	if !brokenCheckpoint(golibvirt.Error{Code: 1, Message: "checkpoint inconsistent: missing or broken bitmap 'cp2' for disk 'vda'"}) {
		t.Fatal("broken checkpoint not recognized")
	}
}

func TestLockDomain(t *testing.T) {
	unlock, err := lockDomain("qemu:///system", "u1", "d")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDomain("qemu:///system", "u1", "d"); err == nil {
		t.Fatal("second backup of one domain allowed")
	}
	u2, err := lockDomain("qemu:///system", "u2", "e")
	if err != nil {
		t.Fatal(err)
	}
	u2()
	unlock()
	unlock, err = lockDomain("qemu:///system", "u1", "d")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}
