package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// makeSystemDisk writes a raw disk of size bytes that looks like a small
// VM's system disk: a partition table, boot code, logs, binaries
// (incompressible), a duplicated region, a filled region, small unaligned
// writes, data in the last (partial) block and holes everywhere else.
func makeSystemDisk(t testing.TB, path string, size int64, seed uint64) *image {
	t.Helper()
	im := newImage(t, path, size).mbr()
	im.random(1*MiB, 2*MiB, seed)            // boot loader, kernel
	im.text(8*MiB, 4*MiB, seed+1)            // logs (compressible)
	im.random(40*MiB+4096, 6*MiB, seed+2)    // binaries, not block aligned
	im.dup(1*MiB, 100*MiB, 2*MiB)            // a copy of the kernel: dedup
	im.fill(150*MiB, 1*MiB, 0xff)            // a filled region
	im.random(200*MiB+12345, 100000, seed+3) // small unaligned write
	im.random(size-10000, 10000, seed+4)     // the last, partial block
	im.close()
	return im
}

// TestRoundTrip backs up a VM with a raw and a qcow2 disk into an encrypted
// repository and restores each disk as raw and as qcow2.
func TestRoundTrip(t *testing.T) {
	requireTool(t, "qemu-img")
	dir := t.TempDir()
	r := initRepo(t) // encrypted, password in CAIRN_PASSWORD

	// vda: raw, 256 MiB + 7 sectors (not a multiple of the block size).
	vdaSize := 256*MiB + 7*512
	vda := filepath.Join(dir, "web1-vda.img")
	vdaImg := makeSystemDisk(t, vda, vdaSize, 100)

	// vdb: qcow2 v3, converted from a raw image with data and holes.
	vdbRef := filepath.Join(dir, "web1-vdb.ref.raw")
	newImage(t, vdbRef, 128*MiB).
		random(0, 4*MiB, 200).text(64*MiB, 2*MiB, 201).fill(127*MiB, 1*MiB, 0xab).close()
	vdb := filepath.Join(dir, "web1-vdb.qcow2")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1", vdbRef, vdb)

	sum := r.backupWith("web1", []string{"--tag", "env=test", "--tag", "tier=web"}, "vda="+vda, "vdb="+vdb)
	if sum.LogicalSize != vdaSize+128*MiB {
		t.Errorf("backup logical_size %d, want %d", sum.LogicalSize, vdaSize+128*MiB)
	}
	if sum.NewBytes == 0 || sum.NewBytes > sum.DataBytes || sum.BytesRead > vdaSize/4+128*MiB/4 {
		t.Errorf("backup summary implausible (holes should not be read, new <= data): %+v", sum)
	}

	// list --json: the point, with id, vm, disks and tags.
	pts := r.points()
	if len(pts) != 1 || pts[0].ID != sum.ID || pts[0].VM != "web1" {
		t.Fatalf("list --json = %+v, want one point %s of web1", pts, sum.ID)
	}
	if strings.Join(pts[0].Disks, ",") != "vda,vdb" || pts[0].LogicalSize != sum.LogicalSize ||
		pts[0].Tags["env"] != "test" || pts[0].Tags["tier"] != "web" {
		t.Errorf("list --json entry %+v: want disks vda,vdb, size %d, tags env=test tier=web", pts[0], sum.LogicalSize)
	}

	// show --json by ID prefix.
	var shown struct {
		ID    string `json:"id"`
		VM    string `json:"vm"`
		Disks []struct {
			Name   string `json:"name"`
			Size   int64  `json:"size"`
			Format string `json:"source_format"`
			Source string `json:"source"`
			Tables int    `json:"tables"`
		} `json:"disk_details"`
	}
	decodeJSON(t, r.mustRun("show", "--json", sum.ID[:8]), &shown)
	if shown.ID != sum.ID || shown.VM != "web1" || len(shown.Disks) != 2 {
		t.Fatalf("show --json: %+v", shown)
	}
	wantDisks := map[string]struct {
		size   int64
		format string
		source string
	}{"vda": {vdaSize, "raw", vda}, "vdb": {128 * MiB, "qcow2", vdb}}
	for _, d := range shown.Disks {
		w := wantDisks[d.Name]
		if d.Size != w.size || d.Format != w.format || d.Source != w.source || d.Tables == 0 {
			t.Errorf("show: disk %+v, want size %d format %s source %s", d, w.size, w.format, w.source)
		}
	}

	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	vdaRaw, vdaQ := filepath.Join(out, "vda.raw"), filepath.Join(out, "vda.qcow2")
	vdbRaw, vdbQ := filepath.Join(out, "vdb.raw"), filepath.Join(out, "vdb.img")
	r.restore(sum.ID, "vda", vdaRaw)                    // raw by extension
	r.restore(sum.ID[:8], "vda", vdaQ)                  // qcow2 by extension
	r.restore(sum.ID, "vdb", vdbRaw, "--format", "raw") // explicit raw
	r.restore(sum.ID, "vdb", vdbQ, "--format", "qcow2") // qcow2 despite .img

	// Byte-exact, judged by qemu-img and by a plain byte comparison.
	sameBytes(t, vda, vdaRaw)
	sameBytes(t, vdbRef, vdbRaw)
	qemuCompare(t, vda, vdaRaw)
	qemuCompare(t, vda, vdaQ)
	qemuCompare(t, vdb, vdbRaw) // against the qcow2 source directly
	qemuCompare(t, vdb, vdbQ)
	qemuCompare(t, vdbRef, vdbQ)
	for _, q := range []string{vdaQ, vdbQ} {
		qemuCheck(t, q)
		info := qemuInfo(t, q)
		if info["format"] != "qcow2" {
			t.Errorf("%s: qemu-img info format %v, want qcow2", q, info["format"])
		}
	}
	if vs := qemuInfo(t, vdaQ)["virtual-size"]; vs != float64(vdaSize) {
		t.Errorf("%s: virtual-size %v, want %d", vdaQ, vs, vdaSize)
	}

	// Restored images are sparse: holes stay holes.
	for _, c := range []struct {
		path string
		data int64
	}{{vdaRaw, vdaImg.data}, {vdbRaw, 7 * MiB}, {vdaQ, vdaImg.data}, {vdbQ, 7 * MiB}} {
		alloc, size := allocated(t, c.path), fileSize(t, c.path)
		// Every written range can add up to two partial blocks.
		limit := c.data + 16*blockSize + 2*MiB
		if alloc > limit || (strings.HasSuffix(c.path, ".raw") && alloc > size/4) {
			t.Errorf("%s is not sparse: %d bytes allocated of %d (about %d bytes of data)", c.path, alloc, size, c.data)
		}
	}

	// An existing target is not replaced without --overwrite.
	before := fileSize(t, vdaRaw)
	res := r.run("restore", "disk", sum.ID, "vdb", "--to", vdaRaw)
	if res.code == 0 || !strings.Contains(res.stderr, vdaRaw) {
		t.Errorf("restore onto an existing file: want a failure naming it:\n%v", res)
	}
	if fileSize(t, vdaRaw) != before {
		t.Errorf("failed restore changed the existing %s", vdaRaw)
	}
	r.restore(sum.ID, "vda", vdaRaw, "--overwrite")
	sameBytes(t, vda, vdaRaw)

	// The repository is encrypted: config says so, and no pack holds the
	// plaintext of the boot sector.
	var cfg struct {
		Encryption string `json:"encryption"`
	}
	raw, err := os.ReadFile(filepath.Join(r.dir, "config"))
	if err != nil || json.Unmarshal(raw, &cfg) != nil || cfg.Encryption != "aes-256-gcm" {
		t.Errorf("repository config %s: want encryption aes-256-gcm (%v)", raw, err)
	}
	for _, pk := range r.packFiles() {
		data, err := os.ReadFile(pk)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte("cairn-e2e boot code")) {
			t.Errorf("pack %s holds plaintext of the disk", pk)
		}
	}

	rep := r.check("--read-data")
	if rep.Points != 1 || rep.PacksRead == 0 {
		t.Errorf("check --read-data: %+v", rep)
	}
}
