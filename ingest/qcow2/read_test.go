package qcow2

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// imageCase describes a qcow2 image built with qemu-img from a raw file
// with random data, then modified with qemu-io.
type imageCase struct {
	name        string
	size        int64
	convertArgs []string // extra qemu-img convert arguments (-c, -o ...)
	data        []region // random data in the source raw file
	io          []string // qemu-io commands applied to the qcow2 image
	clusterSize int
	want        []runKind // kinds of allocation unit the image must contain
}

func (c imageCase) build(t *testing.T, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src.raw")
	writeRandomRaw(t, src, c.size, uint64(len(c.name))*7919+uint64(c.size), c.data...)
	img := filepath.Join(dir, "img.qcow2")
	args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, c.convertArgs...)
	sh(t, "qemu-img", append(args, src, img)...)
	qemuIO(t, img, c.io...)
	return img
}

// scattered returns data regions at unaligned offsets spread over size.
func scattered(size int64, n int, length int64) []region {
	var rs []region
	for i := 0; i < n; i++ {
		off := size * int64(i) / int64(n)
		off += int64(i) * 4099 % 65536
		if off+length > size {
			length = size - off
		}
		rs = append(rs, region{off, length})
	}
	return rs
}

func TestReadQemuImages(t *testing.T) {
	needQemuIO(t)
	const mib = 1 << 20
	ioMix := []string{
		"write -P 0x5a 100000 70000",
		"write -z 1048576 300000",
		"write -P 0xc3 2500000 1",
		"discard 3145728 1048576",
	}
	cases := []imageCase{
		{name: "v2-64k", size: 8 * mib, convertArgs: []string{"-o", "compat=0.10"}, data: scattered(8*mib, 9, 200000), io: ioMix, clusterSize: 65536, want: []runKind{runData, runUnalloc}},
		{name: "v3-512", size: 4 * mib, convertArgs: []string{"-o", "cluster_size=512"}, data: scattered(4*mib, 9, 30000), io: ioMix, clusterSize: 512, want: []runKind{runData, runZero, runUnalloc}},
		{name: "v2-512", size: 4 * mib, convertArgs: []string{"-o", "compat=0.10,cluster_size=512"}, data: scattered(4*mib, 9, 30000), io: ioMix, clusterSize: 512, want: []runKind{runData, runUnalloc}},
		{name: "v3-4k", size: 8 * mib, convertArgs: []string{"-o", "cluster_size=4096"}, data: scattered(8*mib, 12, 100000), io: ioMix, clusterSize: 4096, want: []runKind{runData, runZero, runUnalloc}},
		{name: "v3-64k", size: 8 * mib, data: scattered(8*mib, 12, 150000), io: ioMix, clusterSize: 65536, want: []runKind{runData, runZero, runUnalloc}},
		{name: "v3-2m", size: 24 * mib, convertArgs: []string{"-o", "cluster_size=2M"}, data: scattered(24*mib, 5, 900000), io: append([]string{"write -z 16777216 2097152"}, ioMix...), clusterSize: 2 * mib, want: []runKind{runData, runZero, runUnalloc}},
		{name: "v3-64k-lazy", size: 8 * mib, convertArgs: []string{"-o", "lazy_refcounts=on"}, data: scattered(8*mib, 5, 150000), io: ioMix, clusterSize: 65536, want: []runKind{runData, runZero, runUnalloc}},
		{name: "v3-unaligned-size", size: 5*mib + 1536, data: []region{{0, 1000}, {5*mib - 3000, 4536}}, io: []string{"write -P 0x11 5243392 512"}, clusterSize: 65536, want: []runKind{runData, runUnalloc}},
		{name: "v3-2m-unaligned-size", size: 5*mib + 512, convertArgs: []string{"-o", "cluster_size=2M"}, data: []region{{5 * mib, 512}, {100, 100}}, clusterSize: 2 * mib, want: []runKind{runData, runUnalloc}},
		{name: "v3-prealloc-metadata", size: 4 * mib, convertArgs: []string{"-o", "preallocation=metadata"}, data: scattered(4*mib, 3, 50000), io: []string{"write -z 0 65536"}, clusterSize: 65536, want: []runKind{runData, runZero}},
		{name: "v3-extl2-64k", size: 8 * mib, convertArgs: []string{"-o", "extended_l2=on"}, data: scattered(8*mib, 6, 70000), io: append([]string{"write -P 0x77 7000000 3000", "write -z 7002048 2048", "write -P 0x78 7340032 2048", "write -z 7345000 20000"}, ioMix...), clusterSize: 65536, want: []runKind{runData, runZero, runUnalloc}},
		{name: "v3-extl2-16k", size: 2 * mib, convertArgs: []string{"-o", "extended_l2=on,cluster_size=16384"}, data: scattered(2*mib, 6, 7000), io: []string{"write -P 0x21 600000 700", "write -z 603000 1500", "write -P 0x22 1048576 512"}, clusterSize: 16384, want: []runKind{runData, runZero, runUnalloc}},
		{name: "deflate-64k", size: 8 * mib, convertArgs: []string{"-c"}, data: scattered(8*mib, 8, 150000), clusterSize: 65536, want: []runKind{runCompressed, runUnalloc}},
		{name: "deflate-512", size: 2 * mib, convertArgs: []string{"-c", "-o", "cluster_size=512"}, data: scattered(2*mib, 8, 20000), clusterSize: 512, want: []runKind{runCompressed, runUnalloc}},
		{name: "deflate-4k-v2", size: 4 * mib, convertArgs: []string{"-c", "-o", "cluster_size=4096,compat=0.10"}, data: scattered(4*mib, 8, 20000), clusterSize: 4096, want: []runKind{runCompressed, runUnalloc}},
		{name: "deflate-2m", size: 12 * mib, convertArgs: []string{"-c", "-o", "cluster_size=2M"}, data: scattered(12*mib, 4, 300000), clusterSize: 2 * mib, want: []runKind{runCompressed, runUnalloc}},
		{name: "deflate-mixed", size: 4 * mib, convertArgs: []string{"-c"}, data: scattered(4*mib, 4, 100000), io: []string{"write -P 0x33 200000 100000", "write -z 1048576 65536"}, clusterSize: 65536, want: []runKind{runCompressed, runData, runZero, runUnalloc}},
		{name: "zstd-64k", size: 8 * mib, convertArgs: []string{"-c", "-o", "compression_type=zstd"}, data: scattered(8*mib, 8, 150000), clusterSize: 65536, want: []runKind{runCompressed, runUnalloc}},
		{name: "zstd-4k", size: 4 * mib, convertArgs: []string{"-c", "-o", "compression_type=zstd,cluster_size=4096"}, data: scattered(4*mib, 8, 30000), io: []string{"write -P 0x44 10000 10000"}, clusterSize: 4096, want: []runKind{runCompressed, runData, runUnalloc}},
		{name: "zstd-512", size: 1 * mib, convertArgs: []string{"-c", "-o", "compression_type=zstd,cluster_size=512"}, data: scattered(1*mib, 8, 3000), clusterSize: 512, want: []runKind{runCompressed, runUnalloc}},
		{name: "zstd-2m-extl2", size: 8 * mib, convertArgs: []string{"-c", "-o", "compression_type=zstd,cluster_size=2M,extended_l2=on"}, data: scattered(8*mib, 3, 500000), io: []string{"write -P 0x55 4194304 65536"}, clusterSize: 2 * mib, want: []runKind{runCompressed, runData, runUnalloc}},
		{name: "compressible", size: 4 * mib, convertArgs: []string{"-c"}, data: []region{{3 * mib, 65536 * 3}}, io: []string{"write -P 0x01 0 1048576", "write -P 0x02 1048576 65536"}, clusterSize: 65536, want: []runKind{runCompressed, runUnalloc}},
		{name: "empty", size: 16 * mib, clusterSize: 65536, want: []runKind{runUnalloc}},
		{name: "zero-size", size: 0, clusterSize: 65536},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := c.build(t, dir)
			im := mustOpen(t, img)
			if im.Size() != c.size {
				t.Fatalf("Size() = %d, want %d", im.Size(), c.size)
			}
			if im.ClusterSize() != c.clusterSize {
				t.Fatalf("ClusterSize() = %d, want %d", im.ClusterSize(), c.clusterSize)
			}
			st := kindStats(t, im)
			for _, k := range c.want {
				if st[k] == 0 {
					t.Errorf("image has no units of kind %d: %v", k, st)
				}
			}
			t.Logf("units by kind (unalloc, zero, data, compressed): %v", st)
			verifyAgainstRaw(t, im, toRaw(t, img))
		})
	}
}

// TestReadDirtyBit checks that an image with the dirty bit (lazy refcounts
// left unrepaired) is read normally.
func TestReadDirtyBit(t *testing.T) {
	needQemuIO(t)
	dir := t.TempDir()
	c := imageCase{name: "dirty", size: 4 << 20, convertArgs: []string{"-o", "lazy_refcounts=on"}, data: scattered(4<<20, 4, 100000)}
	img := c.build(t, dir)
	want := toRaw(t, img)
	patch(t, img, 72, be64(incompatDirty))
	im := mustOpen(t, img)
	verifyAgainstRaw(t, im, want)
}

// TestSparseLarge reads a 64 GiB image with a few MiB written and checks
// that Extents reports only the written clusters.
func TestSparseLarge(t *testing.T) {
	needQemuIO(t)
	const gib = 1 << 30
	for _, cs := range []int{65536, 4096} {
		t.Run(fmt.Sprint(cs), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			img := filepath.Join(dir, "big.qcow2")
			sh(t, "qemu-img", "create", "-f", "qcow2", "-o", fmt.Sprintf("cluster_size=%d", cs), img, "64G")
			writes := []region{{0, 1 << 20}, {10*gib + 12345, 2 << 20}, {33 * gib, 65536}, {64*gib - 512*1024, 512 * 1024}}
			var cmds []string
			for i, w := range writes {
				cmds = append(cmds, fmt.Sprintf("write -P %#x %d %d", 0x10+i, w.off, w.n))
			}
			cmds = append(cmds, fmt.Sprintf("write -z %d %d", 10*gib+65536*4, 65536*2))
			qemuIO(t, img, cmds...)
			im := mustOpen(t, img)
			if im.Size() != 64*gib {
				t.Fatalf("Size() = %d", im.Size())
			}
			ext := verifyAgainstRaw(t, im, toRaw(t, img))
			var written int64
			for _, w := range writes {
				written += w.n + 2*int64(cs)
			}
			if got := extentBytes(ext); got > written || got < 3<<20 {
				t.Fatalf("extents cover %d bytes (%d extents), want about %d", got, len(ext), written)
			}
			t.Logf("%d extents, %d bytes", len(ext), extentBytes(ext))
		})
	}
}

func TestSniff(t *testing.T) {
	needQemu(t)
	img := tmp(t, "a.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", img, "1M")
	im := mustOpen(t, img)
	if !Sniff(im.f) {
		t.Fatal("Sniff(qcow2) = false")
	}
	if Sniff(strings.NewReader("QFI")) || Sniff(strings.NewReader("\x00\x00\x00\x00")) {
		t.Fatal("Sniff(non-qcow2) = true")
	}
	if !Sniff(strings.NewReader("QFI\xfb")) {
		t.Fatal("Sniff(magic only) = false")
	}
}
