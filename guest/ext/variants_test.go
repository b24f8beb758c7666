package ext

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// variant is one way of making a file system from the source tree.
type variant struct {
	name     string
	mkfs     string
	args     []string
	wantType string
}

var variants = []variant{
	{"ext2-1k", "mkfs.ext2", []string{"-b", "1024"}, "ext2"},
	{"ext2-rev0", "mkfs.ext2", []string{"-r", "0"}, "ext2"},
	{"ext3", "mkfs.ext3", nil, "ext3"},
	{"ext3-2k", "mkfs.ext3", []string{"-b", "2048"}, "ext3"},
	{"ext4", "mkfs.ext4", nil, "ext4"},
	{"ext4-old", "mkfs.ext4", []string{"-O", "^64bit,^metadata_csum,^huge_file"}, "ext4"},
	{"ext4-blockmap", "mkfs.ext4", []string{"-O", "^extent,^64bit"}, "ext4"},
	{"ext4-inline", "mkfs.ext4", []string{"-O", "inline_data"}, "ext4"},
	{"ext4-I128", "mkfs.ext4", []string{"-I", "128"}, "ext4"},
	{"ext4-noflex", "mkfs.ext4", []string{"-O", "^flex_bg"}, "ext4"},
	{"ext4-metabg", "mkfs.ext4", []string{"-O", "meta_bg,^resize_inode", "-b", "1024"}, "ext4"},
	{"ext4-sparse2", "mkfs.ext4", []string{"-O", "sparse_super2"}, "ext4"},
	{"ext4-64k", "mkfs.ext4", []string{"-b", "65536"}, "ext4"},
	// Written by the kernel: mkfs an empty ext4, loop-mount it, cp -a.
	{"ext4-kernel", "kernel", nil, "ext4"},
}

// makeImage makes a 300 MiB (sparse) image of the source tree.
func makeImage(t *testing.T, v variant, src string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), v.name+".img")
	if v.mkfs == "kernel" {
		runCmd(t, "mkfs.ext4", "-q", "-F", "-N", "12000", "-L", v.name, img, "300M")
		mnt := t.TempDir()
		runCmd(t, "mount", "-o", "loop", img, mnt)
		defer runCmd(t, "umount", mnt)
		runCmd(t, "cp", "-a", "--sparse=always", src+"/.", mnt)
		return img
	}
	args := append([]string{"-q", "-F", "-N", "12000", "-L", v.name, "-E", "root_owner=0:0", "-d", src}, v.args...)
	args = append(args, img, "300M")
	runCmd(t, v.mkfs, args...)
	return img
}

func TestVariants(t *testing.T) {
	requireTool(t, "mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "e2fsck", "mount", "cp")
	src := sourceTree(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			img := makeImage(t, v, src)
			runCmd(t, "e2fsck", "-fn", img) // the image itself is sound
			fh, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			st, _ := fh.Stat()
			if !Probe(fh, st.Size()) {
				t.Fatal("Probe = false")
			}
			fsys, err := Open(fh, st.Size())
			if err != nil {
				t.Fatal(err)
			}
			if got := fsys.Type(); got != v.wantType {
				t.Errorf("Type = %q, want %q", got, v.wantType)
			}
			if got := fsys.Label(); got != v.name {
				t.Errorf("Label = %q, want %q", got, v.name)
			}
			f := fsys.(*FS)
			if strings.Contains(v.name, "rev0") && (f.sb.revLevel != 0 || f.sb.inodeSize != 128) {
				t.Errorf("rev0 variant has revision %d, inode size %d", f.sb.revLevel, f.sb.inodeSize)
			}
			// mke2fs -d (1.47.0) stores whole seconds only, no epoch bits:
			// the kernel-written variant checks nanoseconds and post-2038.
			files := compareTree(t, fsys, src, v.mkfs == "kernel", false)
			if files < 5000 {
				t.Errorf("compared %d files", files)
			}
		})
	}
}
