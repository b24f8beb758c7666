// Package testimg builds small raw disk images with real partition tables
// (written by sfdisk) and real file systems (mkfs.ext4 -d) for the tests of
// the restore browser (fs/tree and test/mount).
//
// The tools are required when CI=true or CAIRN_REQUIRE_TOOLS=1 (a missing
// one fails the test); otherwise a missing tool skips it.
package testimg

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const MiB = 1 << 20

// Required reports whether missing tools must fail tests rather than skip them.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("CAIRN_REQUIRE_TOOLS") == "1"
}

// RequireTool returns the path of tool, or fails (CI) or skips the test.
func RequireTool(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, tool); isExec(p) {
			return p
		}
	}
	if Required() {
		t.Fatalf("%s is not installed and CI=true or CAIRN_REQUIRE_TOOLS=1 requires it (apt-get install fdisk e2fsprogs qemu-utils fuse3)", tool)
	}
	t.Skipf("skipping: %s is not installed; set CAIRN_REQUIRE_TOOLS=1 to make this a failure", tool)
	return ""
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// Fill says what a partition holds.
type Fill int

const (
	Zeros  Fill = iota // nothing written
	Ext4               // an ext4 file system made with mkfs.ext4 -d from a few files
	Random             // pseudo-random bytes in its first half, zeros after
)

// PartSpec is one partition to create.
type PartSpec struct {
	Size int64 // bytes, a multiple of 1 MiB; 0: the rest of the disk
	Fill Fill
	Type string // sfdisk type ("linux", "L", "83", "5" for extended...); default linux
}

// Spec is an image to create.
type Spec struct {
	Size  int64  // bytes
	Label string // "gpt" or "dos"
	Parts []PartSpec
	Seed  uint64
	// Script replaces the sfdisk script built from Parts when set.
	Script string
}

// Part is a partition as sfdisk reports it after writing the table.
type Part struct {
	Number int   // as Linux numbers it (sda1...)
	Start  int64 // bytes
	Size   int64 // bytes
}

// Image is a created image file.
type Image struct {
	Path  string
	Size  int64
	Parts []Part
}

// Bytes returns the image's content.
func (im *Image) Bytes(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(im.Path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Make creates the image described by s at path (a sparse file).
func Make(t testing.TB, path string, s Spec) *Image {
	t.Helper()
	sfdisk := RequireTool(t, "sfdisk")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(s.Size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	script := s.Script
	if script == "" {
		var b strings.Builder
		fmt.Fprintf(&b, "label: %s\n", s.Label)
		for _, p := range s.Parts {
			typ := p.Type
			if typ == "" {
				typ = "linux"
				if s.Label == "dos" {
					typ = "83"
				}
			}
			if p.Size > 0 {
				fmt.Fprintf(&b, "size=%dMiB, type=%s\n", p.Size/MiB, typ)
			} else {
				fmt.Fprintf(&b, "type=%s\n", typ)
			}
		}
		script = b.String()
	}
	run(t, strings.NewReader(script), sfdisk, "--quiet", "--no-reread", "--no-tell-kernel", path)
	im := &Image{Path: path, Size: s.Size, Parts: Layout(t, path)}
	rng := rand.New(rand.NewPCG(s.Seed, 7))
	for i, p := range s.Parts {
		if i >= len(im.Parts) || s.Script != "" {
			break
		}
		part := im.Parts[i]
		switch p.Fill {
		case Ext4:
			fs := MakeExt4(t, filepath.Join(filepath.Dir(path), fmt.Sprintf("p%d.ext4", part.Number)), part.Size, s.Seed)
			WriteAt(t, path, fs, part.Start)
		case Random:
			buf := make([]byte, part.Size/2)
			for j := range buf {
				buf[j] = byte(rng.Uint32())
			}
			WriteAt(t, path, buf, part.Start)
		}
	}
	return im
}

// Layout returns the partitions of an image as sfdisk reads them.
func Layout(t testing.TB, path string) []Part {
	t.Helper()
	out := run(t, nil, RequireTool(t, "sfdisk"), "--json", path)
	var j struct {
		PartitionTable struct {
			SectorSize int64 `json:"sectorsize"`
			Partitions []struct {
				Node  string `json:"node"`
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	ss := j.PartitionTable.SectorSize
	if ss == 0 {
		ss = 512
	}
	var parts []Part
	for _, p := range j.PartitionTable.Partitions {
		var n int
		fmt.Sscanf(p.Node[len(strings.TrimRight(p.Node, "0123456789")):], "%d", &n)
		parts = append(parts, Part{Number: n, Start: p.Start * ss, Size: p.Size * ss})
	}
	return parts
}

// MakeExt4 returns the bytes of an ext4 file system of size bytes holding
// a few files (text, random, a directory tree).
func MakeExt4(t testing.TB, path string, size int64, seed uint64) []byte {
	t.Helper()
	mkfs := RequireTool(t, "mkfs.ext4")
	stage := path + ".d"
	rng := rand.New(rand.NewPCG(seed, 99))
	for i := 0; i < 8; i++ {
		dir := filepath.Join(stage, fmt.Sprintf("dir%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		text := bytes.Repeat([]byte(fmt.Sprintf("file %d of a cairn test file system\n", i)), 2000)
		if err := os.WriteFile(filepath.Join(dir, "text.txt"), text, 0o644); err != nil {
			t.Fatal(err)
		}
		bin := make([]byte, 100<<10+i*4093)
		for j := range bin {
			bin[j] = byte(rng.Uint32())
		}
		if err := os.WriteFile(filepath.Join(dir, "random.bin"), bin, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	run(t, nil, mkfs, "-q", "-F", "-L", "cairntest", "-d", stage, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(stage)
	os.Remove(path)
	return b
}

// WriteAt writes b into the file at off.
func WriteAt(t testing.TB, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func run(t testing.TB, stdin *strings.Reader, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.Bytes(), errb.Bytes())
	}
	return out.Bytes()
}
