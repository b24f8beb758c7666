package ext

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// variant is one way of making a file system from the source tree.
type variant struct {
	name     string
	mkfs     string
	args     []string
	wantType string
	size     string   // image size, 300M when empty
	exclude  []string // source files this variant cannot hold
}

var variants = []variant{
	{"ext2-1k", "mkfs.ext2", []string{"-b", "1024"}, "ext2", "", nil},
	// A file over 2 GiB needs large_file, which forces revision 1.
	{"ext2-rev0", "mkfs.ext2", []string{"-r", "0"}, "ext2", "", []string{"sparse-6G"}},
	{"ext3", "mkfs.ext3", nil, "ext3", "", nil},
	{"ext3-2k", "mkfs.ext3", []string{"-b", "2048"}, "ext3", "", nil},
	{"ext4", "mkfs.ext4", nil, "ext4", "", nil},
	{"ext4-old", "mkfs.ext4", []string{"-O", "^64bit,^metadata_csum,^huge_file"}, "ext4", "", nil},
	{"ext4-blockmap", "mkfs.ext4", []string{"-O", "^extent,^64bit"}, "ext4", "", nil},
	// mke2fs 1.47.0 with inline_data cuts a sparse file's trailing hole
	// off i_size (debugfs agrees with this reader), so leave that file out.
	{"ext4-inline", "mkfs.ext4", []string{"-O", "inline_data"}, "ext4", "", []string{"sparse-6G"}},
	{"ext4-I128", "mkfs.ext4", []string{"-I", "128"}, "ext4", "", nil},
	{"ext4-noflex", "mkfs.ext4", []string{"-O", "^flex_bg"}, "ext4", "", nil},
	{"ext4-metabg", "mkfs.ext4", []string{"-O", "meta_bg,^resize_inode", "-b", "1024"}, "ext4", "", nil},
	{"ext4-sparse2", "mkfs.ext4", []string{"-O", "sparse_super2"}, "ext4", "", nil},
	{"ext4-64k", "mkfs.ext4", []string{"-b", "65536"}, "ext4", "2G", nil},
	// Written by the kernel: mkfs an empty ext4, loop-mount it, cp -a.
	{"ext4-kernel", "kernel", nil, "ext4", "", nil},
}

// makeImage makes a 300 MiB (sparse) image of the source tree.
func makeImage(t *testing.T, v variant, src string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), v.name+".img")
	if v.mkfs == "kernel" {
		fstest.Run(t, "mkfs.ext4", "-q", "-F", "-N", "12000", "-L", v.name, img, "300M")
		mnt := t.TempDir()
		fstest.Run(t, "mount", "-o", "loop", img, mnt)
		defer fstest.Run(t, "umount", mnt)
		fstest.Run(t, "cp", "-a", "--sparse=always", src+"/.", mnt)
		return img
	}
	args := append([]string{"-q", "-F", "-N", "12000", "-L", v.name, "-d", src}, v.args...)
	size := v.size
	if size == "" {
		size = "300M"
	}
	args = append(args, img, size)
	fstest.Run(t, v.mkfs, args...)
	return img
}

func TestVariants(t *testing.T) {
	fstest.RequireTools(t, "e2fsprogs mount coreutils", "mkfs.ext2", "mkfs.ext3", "mkfs.ext4", "e2fsck", "mount", "cp")
	src := sourceTree(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			src := src
			if len(v.exclude) > 0 {
				src = filepath.Join(t.TempDir(), "src")
				fstest.Run(t, "cp", "-a", "--sparse=always", sourceTree(t), src)
				for _, x := range v.exclude {
					if err := os.Remove(filepath.Join(src, x)); err != nil {
						t.Fatal(err)
					}
				}
			}
			img := makeImage(t, v, src)
			fstest.Run(t, "e2fsck", "-fn", img) // the image itself is sound
			fh, size := fstest.OpenImage(t, img)
			if !Probe(fh, size) {
				t.Fatal("Probe = false")
			}
			fsys, err := Open(fh, size)
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
