package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// goodImage creates a small v3 image with data in its first clusters.
func goodImage(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	src := filepath.Join(dir, "src.raw")
	writeRandomRaw(t, src, 2<<20, 9, region{0, 300000}, region{1 << 20, 100000})
	img := filepath.Join(dir, "good.qcow2")
	sh(t, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, extra...), src, img)...)
	return img
}

// l2Location returns the host offset of the first L2 table of img.
func l2Location(t *testing.T, img string) (l1Off, l2Off int64) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, 40); err != nil {
		t.Fatal(err)
	}
	l1Off = int64(binary.BigEndian.Uint64(b))
	if _, err := f.ReadAt(b, l1Off); err != nil {
		t.Fatal(err)
	}
	return l1Off, int64(binary.BigEndian.Uint64(b) & tableOffsetMask)
}

// readAll reads the whole disk and its extents, returning the first error.
func readAll(im *Image) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < im.Size(); off += int64(len(buf)) {
		if _, err := im.ReadAt(buf, off); err != nil && err != io.EOF {
			return err
		}
	}
	return im.Extents(func(off, n int64) error { return nil })
}

func expectErr(t *testing.T, err error, target error, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", substr)
	}
	if !strings.HasPrefix(err.Error(), "qcow2: ") {
		t.Errorf("error %q lacks the qcow2: prefix", err)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %q does not wrap %v", err, target)
	}
	if !strings.Contains(err.Error(), substr) {
		t.Errorf("error %q does not mention %q", err, substr)
	}
	t.Logf("error as expected: %v", err)
}

func TestOpenBadHeaders(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	img := goodImage(t, dir)
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	l1Off, _ := l2Location(t, img)
	cases := []struct {
		name   string
		mutate func(b []byte) []byte
		target error
		substr string
	}{
		{"empty", func(b []byte) []byte { return nil }, ErrTruncated, "header"},
		{"truncated-50", func(b []byte) []byte { return b[:50] }, ErrTruncated, "header"},
		{"truncated-100", func(b []byte) []byte { return b[:100] }, ErrTruncated, "version 3 header"},
		{"truncated-before-l1", func(b []byte) []byte { return b[:l1Off+4] }, ErrTruncated, "L1 table"},
		{"truncated-before-l2", func(b []byte) []byte { return b[:l1Off+65536] }, ErrTruncated, "L2 table"},
		{"bad-magic", func(b []byte) []byte { b[3] = 0xfa; return b }, ErrBadMagic, "bad magic"},
		{"version-1", func(b []byte) []byte { copy(b[4:], be32(1)); return b }, ErrUnsupported, "version 1"},
		{"version-4", func(b []byte) []byte { copy(b[4:], be32(4)); return b }, ErrUnsupported, "version 4"},
		{"cluster-bits-8", func(b []byte) []byte { copy(b[20:], be32(8)); return b }, ErrCorrupt, "cluster_bits 8"},
		{"cluster-bits-huge", func(b []byte) []byte { copy(b[20:], be32(0xffffffff)); return b }, ErrCorrupt, "cluster_bits"},
		{"huge-l1-size", func(b []byte) []byte { copy(b[36:], be32(0xffffffff)); return b }, ErrCorrupt, "l1_size"},
		{"l1-too-small", func(b []byte) []byte { copy(b[24:], be64(1<<40)); return b }, ErrCorrupt, "too small"},
		{"l1-past-eof", func(b []byte) []byte { copy(b[40:], be64(1<<40)); return b }, ErrTruncated, "L1 table"},
		{"l1-unaligned", func(b []byte) []byte { copy(b[40:], be64(uint64(l1Off)+512)); return b }, ErrCorrupt, "not cluster aligned"},
		{"l2-past-eof", func(b []byte) []byte { copy(b[l1Off:], be64(1<<40|1<<63)); return b }, ErrTruncated, "L2 table"},
		{"l2-unaligned", func(b []byte) []byte { copy(b[l1Off:], be64(0x10200)); return b }, ErrCorrupt, "not cluster aligned"},
		{"huge-size", func(b []byte) []byte { copy(b[24:], be64(1<<63)); return b }, ErrCorrupt, "virtual size"},
		{"encrypted-aes", func(b []byte) []byte { copy(b[32:], be32(1)); return b }, ErrUnsupported, "encrypted"},
		{"corrupt-bit", func(b []byte) []byte { copy(b[72:], be64(incompatCorrupt)); return b }, ErrCorrupt, "corrupt bit"},
		{"data-file-bit", func(b []byte) []byte { copy(b[72:], be64(incompatDataFile)); return b }, ErrUnsupported, "external data file"},
		{"unknown-incompat", func(b []byte) []byte { copy(b[72:], be64(1<<7)); return b }, ErrUnsupported, "bit 7"},
		{"unknown-compression", func(b []byte) []byte { copy(b[72:], be64(incompatCompression)); b[104] = 9; return b }, ErrUnsupported, "compression_type 9"},
		{"zstd-without-bit", func(b []byte) []byte { b[104] = 1; return b }, ErrCorrupt, "compression"},
		{"header-length-short", func(b []byte) []byte { copy(b[100:], be32(64)); return b }, ErrCorrupt, "header_length"},
		{"header-length-huge", func(b []byte) []byte { copy(b[100:], be32(1<<20)); return b }, ErrCorrupt, "header_length"},
		{"refcount-order", func(b []byte) []byte { copy(b[96:], be32(7)); return b }, ErrCorrupt, "refcount_order"},
		{"backing-offset-outside", func(b []byte) []byte { copy(b[8:], be64(1<<20)); copy(b[16:], be32(4)); return b }, ErrCorrupt, "backing file name offset"},
		{"backing-name-too-long", func(b []byte) []byte { copy(b[8:], be64(1024)); copy(b[16:], be32(2000)); return b }, ErrCorrupt, "too long"},
		{"backing-missing", func(b []byte) []byte {
			copy(b[8:], be64(2048))
			copy(b[16:], be32(7))
			copy(b[2048:], "nothere")
			return b
		}, os.ErrNotExist, "nothere"},
		{"backing-protocol", func(b []byte) []byte {
			copy(b[8:], be64(2048))
			copy(b[16:], be32(20))
			copy(b[2048:], "nbd://localhost:1234")
			return b
		}, ErrBackingChain, "protocol"},
		{"backing-format-vmdk", func(b []byte) []byte {
			copy(b[8:], be64(2048))
			copy(b[16:], be32(7))
			copy(b[2048:], "src.raw")
			copy(b[112:], be32(extBackingFormat))
			copy(b[116:], be32(4))
			copy(b[120:], "vmdk\x00\x00\x00\x00")
			copy(b[128:], be64(0)) // end of extensions
			return b
		}, ErrBackingChain, "vmdk"},
		{"extension-too-long", func(b []byte) []byte {
			copy(b[112:], be32(0x12345678))
			copy(b[116:], be32(1<<20))
			return b
		}, ErrCorrupt, "extension"},
		{"backing-format-too-long", func(b []byte) []byte {
			copy(b[112:], be32(extBackingFormat))
			copy(b[116:], be32(40))
			return b
		}, ErrCorrupt, "format"},
		{"extl2-small-clusters", func(b []byte) []byte {
			copy(b[20:], be32(12))
			copy(b[72:], be64(incompatExtL2))
			return b
		}, ErrCorrupt, "subclusters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(append([]byte(nil), orig...))
			p := filepath.Join(dir, c.name+".qcow2")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			im, err := Open(p)
			if err == nil {
				err = readAll(im)
				im.Close()
			}
			expectErr(t, err, c.target, c.substr)
		})
	}
}

func TestReadBadTables(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	img := goodImage(t, dir)
	_, l2Off := l2Location(t, img)
	orig, _ := os.ReadFile(img)
	cimg := goodImage(t, t.TempDir(), "-c")
	corig, _ := os.ReadFile(cimg)
	_, cl2Off := l2Location(t, cimg)
	centry := binary.BigEndian.Uint64(corig[cl2Off:])
	if centry&l2Compressed == 0 {
		t.Fatal("first cluster of the compressed image is not compressed")
	}
	im0 := mustOpen(t, cimg)
	coff, _ := im0.compressedSpan(centry)

	v2img := goodImage(t, t.TempDir(), "-o", "compat=0.10")
	v2orig, _ := os.ReadFile(v2img)
	_, v2l2Off := l2Location(t, v2img)
	cases := []struct {
		name   string
		base   []byte
		mutate func(b []byte)
		target error
		substr string
	}{
		{"data-past-eof", orig, func(b []byte) { copy(b[l2Off+8:], be64(1<<40|1<<63)) }, ErrTruncated, "past the end"},
		{"data-unaligned", orig, func(b []byte) { copy(b[l2Off+8:], be64(0x30200|1<<63)) }, ErrCorrupt, "not cluster aligned"},
		{"zero-alloc-unaligned", orig, func(b []byte) { copy(b[l2Off+8:], be64(0x30200|1)) }, ErrCorrupt, "not cluster aligned"},
		{"v2-zero-flag", v2orig, func(b []byte) { b[v2l2Off+7] |= 1 }, ErrCorrupt, "version 2"},
		{"compressed-past-eof", corig, func(b []byte) {
			copy(b[cl2Off:], be64(centry&^(uint64(1)<<54-1)|uint64(len(corig))+4096))
		}, ErrTruncated, "past the end"},
		{"compressed-garbage", corig, func(b []byte) {
			for i := coff; i < coff+64; i++ {
				b[i] ^= 0x5a
			}
		}, ErrCorrupt, "compressed cluster"},
		{"compressed-short", corig, func(b []byte) {
			// Claim a single sector: the stream ends before a whole cluster.
			copy(b[cl2Off:], be64(centry&^(uint64(1)<<62-1)|uint64(coff)))
		}, ErrCorrupt, "compressed cluster"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := append([]byte(nil), c.base...)
			c.mutate(b)
			p := filepath.Join(dir, c.name+".qcow2")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			im, err := Open(p)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer im.Close()
			expectErr(t, readAll(im), c.target, c.substr)
		})
	}
}

func TestExtL2BadBitmaps(t *testing.T) {
	needQemuIO(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "e.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", "-o", "extended_l2=on", img, "1M")
	qemuIO(t, img, "write -P 0x11 0 4096")
	_, l2Off := l2Location(t, img)
	orig, _ := os.ReadFile(img)
	for _, c := range []struct {
		name  string
		entry []byte
	}{
		{"alloc-and-zero", append(append([]byte(nil), orig[l2Off:l2Off+8]...), be64(1<<32|1)...)},
		{"unallocated-with-alloc-bits", append(be64(0), be64(1)...)},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := append([]byte(nil), orig...)
			copy(b[l2Off:], c.entry)
			p := filepath.Join(dir, c.name+".qcow2")
			os.WriteFile(p, b, 0o644)
			im := mustOpen(t, p)
			expectErr(t, readAll(im), ErrCorrupt, "bitmap")
		})
	}
}

func TestBackingLoops(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.qcow2")
	b := filepath.Join(dir, "b.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", a, "1M")
	shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", b, "1M")
	sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
	_, err := Open(b)
	expectErr(t, err, ErrBackingChain, "loop")

	self := filepath.Join(dir, "self.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", self, "1M")
	sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "self.qcow2", "-F", "qcow2", self)
	_, err = Open(self)
	expectErr(t, err, ErrBackingChain, "loop")

	// A symlink to an image in the chain is the same file.
	if err := os.Symlink(a, filepath.Join(dir, "link.qcow2")); err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(dir, "c.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", c, "1M")
	sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "link.qcow2", "-F", "qcow2", c)
	sh(t, "qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "c.qcow2", "-F", "qcow2", a)
	_, err = Open(c)
	expectErr(t, err, ErrBackingChain, "loop")
}

func TestBackingDepth(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	sh(t, "qemu-img", "create", "-f", "qcow2", filepath.Join(dir, "0.qcow2"), "1M")
	for i := 1; i <= maxChainDepth+1; i++ {
		shIn(t, dir, "qemu-img", "create", "-f", "qcow2", "-u", "-b", fmt.Sprintf("%d.qcow2", i-1), "-F", "qcow2", fmt.Sprintf("%d.qcow2", i), "1M")
	}
	// An image with exactly maxChainDepth backing files opens.
	im := mustOpen(t, filepath.Join(dir, fmt.Sprintf("%d.qcow2", maxChainDepth)))
	if err := readAll(im); err != nil {
		t.Fatal(err)
	}
	_, err := Open(filepath.Join(dir, fmt.Sprintf("%d.qcow2", maxChainDepth+1)))
	expectErr(t, err, ErrBackingChain, "more than 16")
}

func TestEncryptedAndDataFile(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	enc := filepath.Join(dir, "enc.qcow2")
	out, err := exec.Command("qemu-img", "create", "-f", "qcow2", "--object", "secret,id=sec0,data=123456",
		"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=100", enc, "1M").CombinedOutput()
	if err != nil {
		// The PBKDF benchmark can fail on a busy machine ("Unable to get
		// accurate CPU usage"); mark a plain image as LUKS-encrypted.
		t.Logf("qemu-img create (LUKS): %v: %s", err, out)
		sh(t, "qemu-img", "create", "-f", "qcow2", enc, "1M")
		patch(t, enc, 32, be32(2))
	}
	_, err = Open(enc)
	expectErr(t, err, ErrUnsupported, "encrypted")

	df := filepath.Join(dir, "df.qcow2")
	sh(t, "qemu-img", "create", "-f", "qcow2", "-o", "data_file="+filepath.Join(dir, "df.raw"), df, "1M")
	_, err = Open(df)
	expectErr(t, err, ErrUnsupported, "external data file")

	// Opening things that are not images.
	_, err = Open(filepath.Join(dir, "missing.qcow2"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "qcow2: ") {
		t.Fatalf("Open(missing) = %v", err)
	}
	_, err = Open(dir)
	expectErr(t, err, ErrUnsupported, "not a regular file")
}

func TestReadAtArgs(t *testing.T) {
	needQemu(t)
	img := goodImage(t, t.TempDir())
	im := mustOpen(t, img)
	if _, err := im.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("negative offset accepted")
	}
	if n, err := im.ReadAt(nil, im.Size()); n != 0 || err != nil {
		t.Fatalf("empty read at Size = %d, %v", n, err)
	}
	if n, err := im.ReadAt(make([]byte, 1), im.Size()+5); n != 0 || err != io.EOF {
		t.Fatalf("read past Size = %d, %v", n, err)
	}
	stop := errors.New("stop")
	calls := 0
	err := im.Extents(func(off, n int64) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Fatalf("Extents returned %v after %d calls, want the callback's error after 1", err, calls)
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	if err := im.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := im.ReadAt(make([]byte, 512), 0); err == nil {
		t.Fatal("read after Close succeeded")
	}
}
