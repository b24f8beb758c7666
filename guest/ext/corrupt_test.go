package ext

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/vfs"
)

// seedFS opens a copy of a seed image; the copy may be corrupted.
func seedFS(t *testing.T, name string) ([]byte, *FS) {
	t.Helper()
	img := append([]byte(nil), seeds(t)[name]...)
	f, err := open(bytes.NewReader(img), int64(len(img)), true)
	if err != nil {
		t.Fatal(err)
	}
	return img, f
}

// inodeOffset is where inode ino lies in the image.
func inodeOffset(t *testing.T, f *FS, ino uint64) int {
	t.Helper()
	gd, err := f.group((ino - 1) / uint64(f.sb.inodesPerGroup))
	if err != nil {
		t.Fatal(err)
	}
	return int(gd.inodeTable*f.sb.blockSize) + int((ino-1)%uint64(f.sb.inodesPerGroup))*int(f.sb.inodeSize)
}

func lookupPath(t *testing.T, f vfs.FS, path string) uint64 {
	t.Helper()
	ino := f.Root()
	for _, name := range strings.Split(path, "/") {
		e, err := f.Lookup(ino, name)
		if err != nil {
			t.Fatal(err)
		}
		ino = e.Ino
	}
	return ino
}

func wantMalformed(t *testing.T, err error, substr string) {
	t.Helper()
	if !errors.Is(err, vfs.ErrMalformed) || !strings.Contains(err.Error(), substr) {
		t.Errorf("error %v, want ErrMalformed mentioning %q", err, substr)
	}
}

func TestCorruptExtents(t *testing.T) {
	img, f := seedFS(t, "ext4-64bit.img.gz")
	ino := lookupPath(t, f, "indirect")
	off := inodeOffset(t, f, ino) + 0x28 // i_block: the extent header
	reopen := func() *FS {
		g, err := open(bytes.NewReader(img), int64(len(img)), true)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	le := binary.LittleEndian
	le.PutUint16(img[off:], 0)
	_, err := reopen().Open(ino)
	wantMalformed(t, err, "extent header magic 0x0000")

	le.PutUint16(img[off:], extentMagic)
	le.PutUint16(img[off+6:], 6) // depth
	_, err = reopen().Open(ino)
	wantMalformed(t, err, "depth 6")

	le.PutUint16(img[off+6:], 0)
	le.PutUint16(img[off+2:], 5) // entries > max (4 in i_block)
	_, err = reopen().Open(ino)
	wantMalformed(t, err, "entries")

	le.PutUint16(img[off+2:], 1)
	le.PutUint32(img[off+12+8:], uint32(f.sb.blocksCount)) // start past the volume
	_, err = reopen().Open(ino)
	wantMalformed(t, err, "outside the volume")
}

func TestCorruptDirectory(t *testing.T) {
	img, f := seedFS(t, "ext2-rev0.img.gz")
	dir := lookupPath(t, f, "dir/sub")
	in, err := f.readInode(dir)
	if err != nil {
		t.Fatal(err)
	}
	blk := binary.LittleEndian.Uint32(in.iblock[:])
	at := int(uint64(blk) * f.sb.blockSize)
	binary.LittleEndian.PutUint16(img[at+4:], 0) // rec_len of "."
	g, err := open(bytes.NewReader(img), int64(len(img)), true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.ReadDir(dir)
	wantMalformed(t, err, "record length 0")
}

func TestCorruptSuperblock(t *testing.T) {
	img := seeds(t)["ext4-inline.img.gz"]
	for _, c := range []struct {
		off  int
		val  uint32
		want string
	}{
		{0x18, 9, "block size"},
		{0x58, 100, "inode size 100"},
		{0x28, 0, "inodes per group"},
		{0x04, 1 << 30, "exceed the"},
	} {
		bad := append([]byte(nil), img...)
		sb := bad[superOffset:]
		if c.off == 0x58 {
			binary.LittleEndian.PutUint16(sb[c.off:], uint16(c.val))
		} else {
			binary.LittleEndian.PutUint32(sb[c.off:], c.val)
		}
		_, err := Open(bytes.NewReader(bad), int64(len(bad)))
		wantMalformed(t, err, c.want)
		if Probe(bytes.NewReader(bad), int64(len(bad))) {
			t.Errorf("Probe accepts a superblock with %s", c.want)
		}
	}
	// A truncated image.
	_, err := Open(bytes.NewReader(img[:len(img)/2]), int64(len(img)/2))
	wantMalformed(t, err, "exceed the")
	if Probe(bytes.NewReader(img[:100]), 100) {
		t.Error("Probe accepts 100 bytes")
	}
}
