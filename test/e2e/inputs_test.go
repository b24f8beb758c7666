package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ioOp is one guest write into a qcow2 image: a byte pattern, zeros
// (`write -z`) or a discard.
type ioOp struct {
	kind      byte // 'w' pattern, 'z' zero write, 'd' discard
	off, n    int64
	pattern   byte
	qemuIOArg string // extra qemu-io flags for 'z' (e.g. "-u")
}

func (o ioOp) qemuIO() string {
	switch o.kind {
	case 'z':
		return strings.TrimSpace(fmt.Sprintf("write -z %s %d %d", o.qemuIOArg, o.off, o.n))
	case 'd':
		return fmt.Sprintf("discard %d %d", o.off, o.n)
	}
	return fmt.Sprintf("write -P %#x %d %d", o.pattern, o.off, o.n)
}

// makeOverlay creates a qcow2 overlay of backing (format backingFmt, named
// in the overlay as backingName, relative to the overlay's directory or
// absolute) of size bytes, and applies ops to it: with qemu-io when it is
// installed; otherwise the changes are made to a raw copy and written as
// the difference to the backing file with `qemu-img convert -B` (discards
// are then left out).
func makeOverlay(t *testing.T, backing, backingFmt, backingName, path string, size int64, opts string, ops []ioOp) {
	t.Helper()
	if haveTool("qemu-io") {
		args := []string{"create", "-q", "-f", "qcow2", "-b", backingName, "-F", backingFmt}
		if opts != "" {
			args = append(args, "-o", opts)
		}
		qemuImg(t, append(args, path, fmt.Sprint(size))...)
		io := []string{"-f", "qcow2"}
		for _, o := range ops {
			io = append(io, "-c", o.qemuIO())
		}
		mustTool(t, "qemu-io", append(io, path)...)
		return
	}
	t.Logf("qemu-io not installed: building overlay %s with qemu-img convert -B", filepath.Base(path))
	mod := path + ".modified.raw"
	toRaw(t, backing, mod)
	if err := os.Truncate(mod, size); err != nil {
		t.Fatal(err)
	}
	im := openImage(t, mod)
	for _, o := range ops {
		switch o.kind {
		case 'w':
			im.fill(o.off, o.n, o.pattern)
		case 'z':
			im.fill(o.off, o.n, 0)
		}
	}
	im.close()
	args := []string{"convert", "-f", "raw", "-O", "qcow2", "-B", backingName, "-F", backingFmt}
	if opts != "" {
		args = append(args, "-o", opts)
	}
	qemuImg(t, append(args, mod, path)...)
	os.Remove(mod)
}

// TestInputFormats backs up qcow2 images of every kind qemu-img makes and
// checks that each restores byte-exact to what `qemu-img convert -O raw`
// reads from the source.
func TestInputFormats(t *testing.T) {
	requireTool(t, "qemu-img")
	dir := t.TempDir()
	r := initKeyRepo(t)

	// The guest content shared by the converted variants.
	ref := filepath.Join(dir, "content.raw")
	newImage(t, ref, 128*MiB).mbr().
		random(1*MiB, 3*MiB, 300).    // incompressible
		text(16*MiB, 8*MiB, 301).     // compressible
		random(28*MiB, 8*MiB, 302).   //
		dup(1*MiB, 48*MiB, 3*MiB).    // duplicate of the first region
		fill(60*MiB+512, 4096, 0x5a). // sector-aligned, not cluster-aligned
		fill(100*MiB, 1*MiB, 0xee).
		random(128*MiB-4096, 4096, 303). // last cluster
		close()

	type variant struct {
		name  string
		make  func(t *testing.T, out string)
		qcow2 bool // also restore as qcow2 and qemu-img compare with the source
	}
	convert := func(opts ...string) func(t *testing.T, out string) {
		return func(t *testing.T, out string) {
			qemuImg(t, append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, opts...), ref, out)...)
		}
	}
	chainOps := []ioOp{
		{kind: 'w', off: 1 * MiB, n: 64 * KiB, pattern: 0xab}, // the brief's write
		{kind: 'w', off: 70001, n: 3000, pattern: 0x11},       // unaligned: copy-on-write from the base
		{kind: 'z', off: 20 * MiB, n: 1 * MiB},                // zeros over base data must read as zeros
		{kind: 'z', off: 30 * MiB, n: 512 * KiB, qemuIOArg: "-u"},
		{kind: 'w', off: 50 * MiB, n: 3 * MiB, pattern: 0xcd},
		{kind: 'w', off: 150 * MiB, n: 2 * MiB, pattern: 0x77}, // past the end of the base
		{kind: 'd', off: 100 * MiB, n: 512 * KiB},
	}
	variants := []variant{
		{name: "v2-compat0.10", make: convert("-o", "compat=0.10")},
		{name: "v3", make: convert("-o", "compat=1.1"), qcow2: true},
		{name: "v3-4k-clusters", make: convert("-o", "compat=1.1,cluster_size=4096")},
		{name: "v3-2M-clusters", make: convert("-o", "compat=1.1,cluster_size=2M")},
		{name: "compressed-zlib", make: convert("-c", "-o", "compat=1.1"), qcow2: true},
		{name: "compressed-v2", make: convert("-c", "-o", "compat=0.10")},
		{name: "compressed-zstd", make: func(t *testing.T, out string) {
			r := runTool(t, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1,compression_type=zstd", ref, out)
			if r.code != 0 {
				t.Skipf("this qemu-img cannot write zstd-compressed qcow2: %s", r.stderr)
			}
		}},
		{name: "extended-l2", make: func(t *testing.T, out string) {
			convert("-o", "compat=1.1,extended_l2=on,cluster_size=128k")(t, out)
			if haveTool("qemu-io") { // partial subclusters
				mustTool(t, "qemu-io", "-f", "qcow2",
					"-c", fmt.Sprintf("write -P 0x42 %d 4096", 80*MiB),
					"-c", fmt.Sprintf("write -P 0x43 %d %d", 81*MiB+8*KiB, 12*KiB),
					"-c", fmt.Sprintf("write -z %d %d", 16*MiB+4*KiB, 8*KiB), out)
			}
		}},
		{name: "backing-raw", qcow2: true, make: func(t *testing.T, out string) {
			// raw base + qcow2 overlay, bigger than its base, named relatively.
			base := filepath.Join(filepath.Dir(out), "base.raw")
			copySparse(t, ref, base)
			makeOverlay(t, base, "raw", "base.raw", out, 160*MiB, "compat=1.1", chainOps)
		}},
		{name: "backing-chain3", qcow2: true, make: func(t *testing.T, out string) {
			// qcow2 v2 base <- v3 middle (absolute name) <- v3 top (relative name)
			d := filepath.Dir(out)
			base := filepath.Join(d, "chain-base.qcow2")
			qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=0.10", ref, base)
			mid := filepath.Join(d, "chain-mid.qcow2")
			makeOverlay(t, base, "qcow2", base, mid, 128*MiB, "compat=1.1", chainOps[:3])
			makeOverlay(t, mid, "qcow2", "chain-mid.qcow2", out, 128*MiB, "compat=1.1,cluster_size=32k", []ioOp{
				{kind: 'w', off: 1*MiB + 32*KiB, n: 64 * KiB, pattern: 0x99}, // over the middle's write
				{kind: 'w', off: 20*MiB + 4096, n: 4096, pattern: 0x98},      // inside the middle's zeros
				{kind: 'z', off: 28 * MiB, n: 2 * MiB},
			})
		}},
	}

	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			vd := filepath.Join(dir, v.name)
			if err := os.Mkdir(vd, 0o755); err != nil {
				t.Fatal(err)
			}
			src := filepath.Join(vd, "disk.qcow2")
			v.make(t, src)
			want := filepath.Join(vd, "want.raw")
			toRaw(t, src, want)

			sum := r.backup(v.name, "vda="+src)
			if sum.LogicalSize != fileSize(t, want) {
				t.Errorf("logical_size %d, qemu-img says %d", sum.LogicalSize, fileSize(t, want))
			}
			got := filepath.Join(vd, "restored.raw")
			r.restore(sum.ID, "vda", got)
			sameBytes(t, want, got)
			if v.qcow2 {
				gotQ := filepath.Join(vd, "restored.qcow2")
				r.restore(sum.ID, "vda", gotQ)
				qemuCheck(t, gotQ)
				qemuCompare(t, src, gotQ)
			}
		})
	}
	r.check()
}
