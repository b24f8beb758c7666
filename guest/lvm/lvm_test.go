package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

func requireTools(t *testing.T) {
	t.Helper()
	fstest.RequireTools(t, "lvm2 fdisk mount", "pvcreate", "vgcreate", "lvcreate", "lvs", "losetup", "sfdisk")
	fstest.RequireRoot(t, "loop devices")
}

// lab runs the real lvm2 tools against loop devices of image files only:
// a device filter hides every other disk, activation is off (the kernel
// has no device-mapper), and nothing is written to /etc/lvm.
type lab struct {
	t     *testing.T
	dir   string
	loops map[string]string // loop device -> image file
	offs  map[string]int64  // loop device -> offset in its image
}

func newLab(t *testing.T) *lab {
	l := &lab{t: t, dir: t.TempDir(), loops: map[string]string{}, offs: map[string]int64{}}
	t.Cleanup(l.detach)
	return l
}

func (l *lab) image(name string, size int64) string {
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// attach loops img (from byte off, size bytes, 0 = to the end).
func (l *lab) attach(img string, off, size int64) string {
	args := []string{"-f", "--show", "-o", strconv.FormatInt(off, 10)}
	if size > 0 {
		args = append(args, "--sizelimit", strconv.FormatInt(size, 10))
	}
	out, err := exec.Command("losetup", append(args, img)...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("losetup: %v\n%s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	l.loops[dev] = img
	l.offs[dev] = off
	return dev
}

func (l *lab) detach() {
	for dev := range l.loops {
		exec.Command("losetup", "-d", dev).Run()
	}
	l.loops = map[string]string{}
}

func (l *lab) lvm(args ...string) string {
	l.t.Helper()
	var accept []string
	for dev := range l.loops {
		accept = append(accept, fmt.Sprintf(`"a|^%s$|"`, dev))
	}
	conf := `activation{udev_sync=0 udev_rules=0 monitoring=0} backup{backup=0 archive=0} global{activation=0}` +
		` devices{obtain_device_list_from_udev=0 use_devicesfile=0 global_filter=[` + strings.Join(accept, ",") + `,"r|.*|"]}`
	cmd := exec.Command(args[0], append([]string{"--config", conf}, args[1:]...)...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// segment is one row of `lvs --segments`, as the lvm2 tools compute it.
type segment struct {
	lv           string
	startPE, nPE int64
	stripeSize   int64
	ranges       []pvRange
}

type pvRange struct {
	dev   string
	first int64
}

func (l *lab) segments(vg string) (segs []segment, extent int64, peStart map[string]int64) {
	out := l.lvm("lvs", "--segments", "--noheadings", "--nosuffix", "--units", "b", "--separator", ";",
		"-o", "lv_name,seg_start_pe,seg_size_pe,stripe_size,seg_pe_ranges,vg_extent_size", vg)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(strings.TrimSpace(line), ";")
		if len(f) != 6 {
			l.t.Fatalf("lvs line %q", line)
		}
		s := segment{lv: f[0]}
		s.startPE, _ = strconv.ParseInt(f[1], 10, 64)
		s.nPE, _ = strconv.ParseInt(f[2], 10, 64)
		s.stripeSize, _ = strconv.ParseInt(f[3], 10, 64)
		extent, _ = strconv.ParseInt(f[5], 10, 64)
		for _, r := range strings.Fields(f[4]) {
			dev, rng, _ := strings.Cut(r, ":")
			first, _, _ := strings.Cut(rng, "-")
			n, _ := strconv.ParseInt(first, 10, 64)
			s.ranges = append(s.ranges, pvRange{dev, n})
		}
		segs = append(segs, s)
	}
	peStart = map[string]int64{}
	out = l.lvm("pvs", "--noheadings", "--nosuffix", "--units", "b", "--separator", ";", "-o", "pv_name,pe_start")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(strings.TrimSpace(line), ";")
		n, _ := strconv.ParseInt(f[1], 10, 64)
		peStart[f[0]] = n
	}
	return segs, extent, peStart
}

// fill writes random content into every LV of vg at the places the lvm2
// tools report, straight into the image files, and returns it per LV.
func (l *lab) fill(vg string, rng *rand.Rand) map[string][]byte {
	segs, extent, peStart := l.segments(vg)
	want := map[string][]byte{}
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, s := range segs {
		end := (s.startPE + s.nPE) * extent
		if int64(len(want[s.lv])) < end {
			want[s.lv] = append(want[s.lv], make([]byte, end-int64(len(want[s.lv])))...)
		}
		data := want[s.lv][s.startPE*extent : end]
		rng.Read(data)
		k := int64(len(s.ranges))
		chunk := s.stripeSize
		if k == 1 {
			chunk = int64(len(data))
		}
		for rel := int64(0); rel < int64(len(data)); rel += chunk {
			c := rel / chunk
			r := s.ranges[c%k]
			pos := l.offs[r.dev] + peStart[r.dev] + r.first*extent + (c/k)*chunk
			f := files[l.loops[r.dev]]
			if f == nil {
				var err error
				if f, err = os.OpenFile(l.loops[r.dev], os.O_RDWR, 0); err != nil {
					l.t.Fatal(err)
				}
				files[l.loops[r.dev]] = f
			}
			if _, err := f.WriteAt(data[rel:rel+chunk], pos); err != nil {
				l.t.Fatal(err)
			}
		}
	}
	return want
}

type part struct {
	file      string
	off, size int64
}

func readPVs(t *testing.T, parts ...part) []*PV {
	var pvs []*PV
	for _, p := range parts {
		f, err := os.Open(p.file)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		size := p.size
		if size == 0 {
			st, _ := f.Stat()
			size = st.Size() - p.off
		}
		sr := io.NewSectionReader(f, p.off, size)
		if !Probe(sr, size) {
			t.Fatalf("%s at %d: Probe found no PV", p.file, p.off)
		}
		pv, err := ReadPV(sr, size)
		if err != nil {
			t.Fatalf("%s at %d: %v", p.file, p.off, err)
		}
		pvs = append(pvs, pv)
	}
	return pvs
}

func checkVolumes(t *testing.T, vols []Volume, vg string, want map[string][]byte) {
	t.Helper()
	seen := 0
	for _, v := range vols {
		if v.VG != vg {
			continue
		}
		seen++
		w, ok := want[v.Name]
		if !ok {
			t.Errorf("unexpected LV %s/%s", v.VG, v.Name)
			continue
		}
		if v.Err != nil {
			t.Errorf("LV %s/%s: %v", v.VG, v.Name, v.Err)
			continue
		}
		if v.Size != int64(len(w)) {
			t.Errorf("LV %s/%s: size %d, lvm2 says %d", v.VG, v.Name, v.Size, len(w))
			continue
		}
		got := make([]byte, v.Size)
		// Odd-sized reads cross extent, segment and stripe boundaries.
		for off := int64(0); off < v.Size; {
			n, err := v.ReadAt(got[off:min(off+777_777, v.Size)], off)
			if err != nil && !(err == io.EOF && off+int64(n) == v.Size) {
				t.Fatalf("LV %s/%s: ReadAt(%d): %v", v.VG, v.Name, off, err)
			}
			off += int64(n)
		}
		if !bytes.Equal(got, w) {
			t.Errorf("LV %s/%s: content differs from what was written where lvm2 placed it", v.VG, v.Name)
		}
		if n, err := v.ReadAt(make([]byte, 1), v.Size); n != 0 || err != io.EOF {
			t.Errorf("LV %s/%s: read at the end = %d, %v", v.VG, v.Name, n, err)
		}
	}
	if seen != len(want) {
		t.Errorf("VG %s: %d LVs assembled, lvm2 made %d", vg, seen, len(want))
	}
}

// TestWholeDiskAndPartition: a PV on a whole disk with two LVs, one of
// them in two non-contiguous segments, two metadata copies and several
// metadata updates; and a PV on an MBR partition.
func TestWholeDiskAndPartition(t *testing.T) {
	requireTools(t)
	l := newLab(t)
	rng := rand.New(rand.NewSource(7))

	disk := l.image("disk.img", 48<<20)
	d := l.attach(disk, 0, 0)
	// Small metadata areas (60 KiB), so that the circular buffer wraps.
	l.lvm("pvcreate", "--pvmetadatacopies", "2", "--metadatasize", "32k", "--dataalignment", "64k", d)
	l.lvm("vgcreate", "-s", "1m", "vgdisk", d)
	l.lvm("lvcreate", "-an", "-Zn", "-n", "root", "-L", "5m", "vgdisk")
	l.lvm("lvcreate", "-an", "-Zn", "-n", "data", "-L", "7m", "vgdisk")
	l.lvm("lvextend", "-L", "+6m", "vgdisk/root")
	wrapped, last := 0, int64(0)
	for i := 0; i < 30 && wrapped == 0; i++ {
		// Each update writes the whole text after the previous copy.
		l.lvm("lvcreate", "-an", "-Zn", "-n", fmt.Sprintf("filler%d", i), "-L", "1m", "--addtag", strings.Repeat("t", 120), "vgdisk")
		pv := readPVs(t, part{file: disk})[0]
		if pv.Metadata == nil || pv.Metadata.Seqno <= last || len(pv.Metadata.LVs) != 3+i {
			t.Fatalf("after update %d: metadata %+v", i, pv.Metadata)
		}
		last = pv.Metadata.Seqno
		img, _ := os.ReadFile(disk)
		mda := img[4096:]
		if binary.LittleEndian.Uint64(mda[40:])+binary.LittleEndian.Uint64(mda[48:]) > binary.LittleEndian.Uint64(mda[32:]) {
			wrapped++
		}
	}
	if wrapped == 0 {
		t.Error("the metadata text never wrapped around the circular buffer")
	}
	wantDisk := l.fill("vgdisk", rng)

	pimg := l.image("part.img", 40<<20)
	sf := exec.Command("sfdisk", "-q", pimg)
	sf.Stdin = strings.NewReader("label: dos\nstart=2048, size=61440, type=8e\n")
	if out, err := sf.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	p := l.attach(pimg, 2048*512, 61440*512)
	l.lvm("pvcreate", p)
	l.lvm("vgcreate", "vgpart", p)
	l.lvm("lvcreate", "-an", "-Zn", "-n", "home", "-L", "12m", "vgpart")
	wantPart := l.fill("vgpart", rng)
	if len(wantDisk["root"]) != 11<<20 {
		t.Fatalf("root LV is %d bytes", len(wantDisk["root"]))
	}
	l.detach()

	pvs := readPVs(t, part{file: disk}, part{file: pimg, off: 2048 * 512, size: 61440 * 512})
	if pvs[0].Metadata == nil || pvs[0].Metadata.Name != "vgdisk" || pvs[0].Metadata.ExtentSize != 1<<20 {
		t.Fatalf("disk PV metadata: %+v", pvs[0].Metadata)
	}
	var root LV
	for _, lv := range pvs[0].Metadata.LVs {
		if lv.Name == "root" {
			root = lv
		}
	}
	if len(root.Segments) != 2 {
		t.Errorf("root LV has %d segments, want 2 non-contiguous ones", len(root.Segments))
	}
	vols, err := Assemble(pvs)
	if err != nil {
		t.Fatal(err)
	}
	checkVolumes(t, vols, "vgdisk", wantDisk)
	checkVolumes(t, vols, "vgpart", wantPart)

	// The second metadata copy at the end of the disk alone still works.
	f, _ := os.OpenFile(disk, os.O_RDWR, 0)
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, 512), 4096); err != nil { // first mda header
		t.Fatal(err)
	}
	pv2 := readPVs(t, part{file: disk})
	if pv2[0].Metadata == nil || pv2[0].Metadata.Seqno != pvs[0].Metadata.Seqno {
		t.Errorf("with the first metadata area wiped, the second gave %+v", pv2[0].Metadata)
	}
}

// TestTwoPVs: a VG over two disks with a linear LV spanning both and a
// striped LV; with one disk missing the spanning LV reports which PV.
func TestTwoPVs(t *testing.T) {
	requireTools(t)
	l := newLab(t)
	a, b := l.image("a.img", 48<<20), l.image("b.img", 48<<20)
	da, db := l.attach(a, 0, 0), l.attach(b, 0, 0)
	l.lvm("pvcreate", da, db)
	l.lvm("vgcreate", "-s", "2m", "vgtwo", da, db)
	l.lvm("lvcreate", "-an", "-Zn", "-n", "stripe", "-i", "2", "-I", "64k", "-L", "8m", "vgtwo")
	l.lvm("lvcreate", "-an", "-Zn", "-n", "span", "-L", "60m", "vgtwo")
	want := l.fill("vgtwo", rand.New(rand.NewSource(9)))
	uuidB := strings.ReplaceAll(strings.TrimSpace(l.lvm("pvs", "--noheadings", "-o", "pv_uuid", db)), "-", "")
	l.detach()

	pvs := readPVs(t, part{file: a}, part{file: b})
	vols, err := Assemble(pvs)
	if err != nil {
		t.Fatal(err)
	}
	checkVolumes(t, vols, "vgtwo", want)

	vols, err = Assemble(pvs[:1])
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		if v.Name == "span" || v.Name == "stripe" {
			if !errors.Is(v.Err, ErrMissingPV) || !strings.Contains(v.Err.Error(), uuidB) {
				t.Errorf("LV %s without disk b: Err = %v; want ErrMissingPV naming %s", v.Name, v.Err, uuidB)
			}
			if v.ReaderAt != nil {
				t.Errorf("LV %s without disk b has a reader", v.Name)
			}
		}
	}
	if len(vols) != 2 {
		t.Errorf("%d volumes without disk b, want 2 (reported with errors)", len(vols))
	}
}
