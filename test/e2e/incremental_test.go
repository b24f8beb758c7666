package e2e

import (
	"path/filepath"
	"testing"
)

// TestIncremental changes about 2% of a disk's data between two backups:
// the second stores little more than the changed blocks, and both restore
// points restore to their own state.
func TestIncremental(t *testing.T) {
	requireTool(t, "qemu-img")
	rnd := testRand(t)
	dir := t.TempDir()
	r := initKeyRepo(t)

	// vda: raw, 256 MiB with 128 MiB of data in four regions.
	const size = 256 * MiB
	vda := filepath.Join(dir, "db1-vda.img")
	im := newImage(t, vda, size).mbr()
	regions := [][2]int64{{1 * MiB, 40 * MiB}, {64 * MiB, 32 * MiB}, {128*MiB + 4096, 40 * MiB}, {200 * MiB, 16 * MiB}}
	var data int64
	for i, rg := range regions {
		if i == 1 {
			im.text(rg[0], rg[1], uint64(400+i))
		} else {
			im.random(rg[0], rg[1], uint64(400+i))
		}
		data += rg[1]
	}
	im.close()
	// vdb: a qcow2 disk that does not change.
	vdbRef := filepath.Join(dir, "db1-vdb.raw")
	newImage(t, vdbRef, 64*MiB).random(0, 8*MiB, 450).text(32*MiB, 4*MiB, 451).close()
	vdb := filepath.Join(dir, "db1-vdb.qcow2")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", vdbRef, vdb)

	first := r.backup("db1", "vda="+vda, "vdb="+vdb)
	state1 := filepath.Join(dir, "state1.raw")
	copySparse(t, vda, state1)

	// Change ~2% of the data: 40 extents of 64 KiB at random, unaligned
	// offsets inside the data regions (each touches two blocks).
	const extents, extentLen = 40, 64 * KiB
	changed := int64(0)
	im = openImage(t, vda)
	for i := range extents {
		rg := regions[rnd.IntN(len(regions))]
		off := rg[0] + rnd.Int64N(rg[1]-extentLen)
		if off%blockSize == 0 {
			off += 512
		}
		im.random(off, extentLen, rnd.Uint64()+uint64(i))
		changed += extentLen
	}
	im.close()
	t.Logf("changed %d bytes in %d extents (%.1f%% of %d data bytes)", changed, extents, 100*float64(changed)/float64(data), data)

	second := r.backup("db1", "vda="+vda, "vdb="+vdb)
	if second.Parent != first.ID {
		t.Errorf("second backup's parent is %q, want the first point %s", second.Parent, first.ID)
	}
	tables := int64((size/blockSize+tableBlocks-1)/tableBlocks + (64*MiB/blockSize+tableBlocks-1)/tableBlocks)
	limit := changed*3/2 + extents*blockSize + tables*tableBytes
	t.Logf("first backup: new %d bytes of %d data; second: new %d bytes (limit %d), stored %d", first.NewBytes, first.DataBytes, second.NewBytes, limit, second.StoredBytes)
	if second.NewBytes <= 0 || second.NewBytes > limit {
		t.Errorf("second backup new_bytes = %d, want 0 < new_bytes <= %d (1.5 x %d changed bytes + a block per extent + tables)", second.NewBytes, limit, changed)
	}
	if second.StoredBytes > limit+extents*2*1024 {
		t.Errorf("second backup stored_bytes = %d, want <= %d", second.StoredBytes, limit)
	}
	if first.NewBytes < data*9/10 {
		t.Errorf("first backup new_bytes = %d, want about all %d data bytes", first.NewBytes, data)
	}

	// Both points restore to their own state.
	out1, out2 := filepath.Join(dir, "p1.raw"), filepath.Join(dir, "p2.raw")
	r.restore(first.ID, "vda", out1)
	r.restore(second.ID, "vda", out2)
	sameBytes(t, state1, out1)
	sameBytes(t, vda, out2)
	if err := diffFiles(out1, out2); err == nil {
		t.Fatal("the two restore points restored to the same bytes")
	}
	q1 := filepath.Join(dir, "p1-vdb.qcow2")
	r.restore(first.ID, "vdb", q1)
	qemuCompare(t, vdb, q1)
	q2 := filepath.Join(dir, "p2-vdb.raw")
	r.restore(second.ID, "vdb", q2)
	sameBytes(t, vdbRef, q2)

	pts := r.points()
	if len(pts) != 2 {
		t.Fatalf("list shows %d points, want 2", len(pts))
	}
	r.check("--read-data")
}
