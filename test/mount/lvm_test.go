package mount

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/cairn-backup/cairn/fs/testimg"
)

// lvmFixture builds a machine whose volume group spans two disks, without
// device-mapper: vda has p1 (ext4) and p2 (an LVM physical volume), vdb is
// a physical volume as a whole. pvcreate and vgcreate write the labels on
// loop devices; the logical volumes are added with vgcfgrestore (lvcreate
// would need device-mapper): root (ext4, 64 MiB: 11 extents on vda p2, 5
// on vdb) and swap (3 extents of random bytes on vdb). The LV contents are
// written at their extents' offsets. Needs root.
type lvmFixture struct {
	vda, vdb, vg   string
	p1, p2         testimg.Part
	root, swap     []byte
	stage, rootImg string
}

func newLVMFixture(t *testing.T, dir string) *lvmFixture {
	t.Helper()
	for _, tool := range []string{"sfdisk", "mkfs.ext4", "pvcreate", "vgcreate", "vgcfgbackup", "vgcfgrestore", "losetup"} {
		testimg.RequireTool(t, tool)
	}
	if os.Geteuid() != 0 {
		if testimg.Required() {
			t.Fatal("building LVM test disks needs root (loop devices), and CAIRN_REQUIRE_TOOLS=1 requires this test")
		}
		t.Skip("skipping: building LVM test disks needs root (loop devices)")
	}
	f := &lvmFixture{vg: fmt.Sprintf("cairntest%d", os.Getpid())}
	vda := testimg.Make(t, filepath.Join(dir, "lvm-vda.raw"), testimg.Spec{
		Size: 96 * MiB, Label: "gpt", Seed: 11,
		Parts: []testimg.PartSpec{{Size: 24 * MiB, Fill: testimg.Ext4}, {Size: 48 * MiB, Type: "E6D6D379-F507-44C2-A23C-238F2A3DF928"}},
	})
	f.vda, f.p1, f.p2 = vda.Path, vda.Parts[0], vda.Parts[1]
	f.vdb = filepath.Join(dir, "lvm-vdb.raw")
	if err := os.WriteFile(f.vdb, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Truncate(f.vdb, 48*MiB)

	loop := func(args ...string) string {
		dev := strings.TrimSpace(run(t, "losetup", append([]string{"-f", "--show"}, args...)...))
		t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
		return dev
	}
	l1 := loop("-o", strconv.FormatInt(f.p2.Start, 10), "--sizelimit", strconv.FormatInt(f.p2.Size, 10), f.vda)
	l2 := loop(f.vdb)
	lvmcfg := `--config=devices { filter = [ "a|^` + l1 + `$|", "a|^` + l2 + `$|", "r|.*|" ] }`
	run(t, "pvcreate", "-y", lvmcfg, l1, l2)
	run(t, "vgcreate", lvmcfg, "-s", "4m", f.vg, l1, l2)
	backup := filepath.Join(dir, "vg.txt")
	run(t, "vgcfgbackup", lvmcfg, "-f", backup, f.vg)
	meta, _ := os.ReadFile(backup)
	m := regexp.MustCompile(`pe_start = (\d+)`).FindAllSubmatch(meta, -1)
	if len(m) != 2 {
		t.Fatalf("vgcfgbackup:\n%s", meta)
	}
	peStart := [2]int64{}
	for i := range m {
		n, _ := strconv.ParseInt(string(m[i][1]), 10, 64)
		peStart[i] = n * 512
	}
	lvs := `
	logical_volumes {
		root {
			id = "cairnr-ootA-AAAA-AAAA-AAAA-AAAA-AAAAAA"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 2
			segment1 {
				start_extent = 0
				extent_count = 11
				type = "striped"
				stripe_count = 1
				stripes = [ "pv0", 0 ]
			}
			segment2 {
				start_extent = 11
				extent_count = 5
				type = "striped"
				stripe_count = 1
				stripes = [ "pv1", 0 ]
			}
		}
		swap {
			id = "cairns-wapA-AAAA-AAAA-AAAA-AAAA-AAAAAA"
			status = ["READ", "WRITE", "VISIBLE"]
			flags = []
			segment_count = 1
			segment1 {
				start_extent = 0
				extent_count = 3
				type = "striped"
				stripe_count = 1
				stripes = [ "pv1", 5 ]
			}
		}
	}
`
	i := bytes.LastIndexByte(meta, '}')
	meta = append(append(meta[:i:i], lvs...), meta[i:]...)
	os.WriteFile(backup, meta, 0o600)
	cmd := exec.Command("vgcfgrestore", lvmcfg, "-f", backup, f.vg)
	if out, err := cmd.CombinedOutput(); err != nil && !strings.Contains(string(out), "Restored volume group") {
		t.Fatalf("vgcfgrestore: %v\n%s", err, out)
	}

	// The LVs' content, written where their extents are.
	const ext = 4 * MiB
	f.rootImg = filepath.Join(dir, "lv-root.img")
	f.root = testimg.MakeExt4(t, f.rootImg, 16*ext, 12)
	os.WriteFile(f.rootImg, f.root, 0o600)
	testimg.WriteAt(t, f.vda, f.root[:11*ext], f.p2.Start+peStart[0])
	testimg.WriteAt(t, f.vdb, f.root[11*ext:], peStart[1])
	rng := rand.New(rand.NewPCG(5, 5))
	f.swap = make([]byte, 3*ext)
	for i := range f.swap {
		f.swap[i] = byte(rng.Uint32())
	}
	testimg.WriteAt(t, f.vdb, f.swap, peStart[1]+5*ext)
	return f
}

func TestLVMAcrossDisks(t *testing.T) {
	requireFUSE(t)
	t.Setenv("CAIRN_PASSWORD", password)
	dir := t.TempDir()
	f := newLVMFixture(t, dir)
	repoDir := filepath.Join(dir, "repo")
	cairn(t, repoDir, "init", "-q")
	cairn(t, repoDir, "backup", "-q", "--vm", "lvm", "--disk", "vda="+f.vda, "--disk", "vdb="+f.vdb)
	m := startMount(t, repoDir)
	rp := m.path("lvm", "latest")
	if got := listDir(t, filepath.Join(rp, "vda")); !slices.Equal(got, []string{"lvm", "p1", "p1.raw", "p2.raw"}) {
		t.Fatalf("vda/ lists %v", got)
	}
	if got := listDir(t, filepath.Join(rp, "vdb")); len(got) != 0 {
		t.Fatalf("vdb/ lists %v: the volume group shows under vda only", got)
	}
	vg := filepath.Join(rp, "vda", "lvm", f.vg)
	if got := listDir(t, vg); !slices.Equal(got, []string{"root", "root.raw", "swap.raw"}) {
		t.Fatalf("lvm/%s lists %v", f.vg, got)
	}
	for name, want := range map[string][]byte{"root.raw": f.root, "swap.raw": f.swap} {
		got, err := os.ReadFile(filepath.Join(vg, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the logical volume's bytes (%v)", name, err)
		}
	}
	ref := loopMount(t, f.rootImg, 0, 0, "ext4")
	treeDiff(t, ref, filepath.Join(vg, "root"), metaOpts{owners: true, times: true, nlink: true})
	run(t, "e2fsck", "-fn", filepath.Join(vg, "root.raw"))

	out := filepath.Join(dir, "out")
	var list []struct{ ID string }
	if err := jsonUnmarshal(cairn(t, repoDir, "list", "--json"), &list); err != nil || len(list) != 1 {
		t.Fatalf("cairn list: %v", err)
	}
	cairn(t, repoDir, "restore", "files", "-q", list[0].ID, "vda/lvm/"+f.vg+"/root:/dir2", "--to", out)
	treeDiff(t, filepath.Join(ref, "dir2"), filepath.Join(out, "dir2"), metaOpts{owners: true, times: true})
	m.stop(syscall.SIGTERM)
}
