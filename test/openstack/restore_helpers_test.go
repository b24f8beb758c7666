package openstack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/openstack"
	"github.com/cairn-backup/cairn/repo"
)

// The test cloud is the one scripts/openstack-up.sh starts (see
// test/openstack/doc.go): clouds.yaml from CAIRN_TEST_CLOUDS_YAML, cloud
// OS_CLOUD (admin), CAIRN_TEST_CLOUD_ALT / CAIRN_TEST_PROJECT_ALT, and the
// Ceph config for test-only byte access in CAIRN_TEST_CEPH_CONF.
func rsEnv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

var (
	rsCloudsYAML = rsEnv("CAIRN_TEST_CLOUDS_YAML", "/var/lib/openstack-lite/clouds.yaml")
	rsCloudName  = rsEnv("OS_CLOUD", "openstack-lite")
	rsAltProject = rsEnv("CAIRN_TEST_PROJECT_ALT", "cairn-alt")
	rsCephConf   = rsEnv("CAIRN_TEST_CEPH_CONF", "/var/lib/openstack-lite/ceph/ceph.conf")
)

// rsConnect connects to the test cloud as admin, optionally scoped to
// another project. The cloud must be reachable when CAIRN_REQUIRE_OPENSTACK=1.
func rsConnect(t testing.TB, project string, rt http.RoundTripper) *openstack.Cloud {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against the test cloud (-short)")
	}
	os.Setenv("OS_CLIENT_CONFIG_FILE", rsCloudsYAML)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := openstack.Connect(ctx, openstack.Config{Cloud: rsCloudName, ProjectName: project, Transport: rt})
	if err != nil {
		if os.Getenv("CAIRN_REQUIRE_OPENSTACK") == "1" {
			t.Fatalf("the test cloud is required (CAIRN_REQUIRE_OPENSTACK=1) but unreachable: %v", err)
		}
		t.Skipf("no test cloud (start it with scripts/openstack-up.sh): %v", err)
	}
	return cl
}

// api is a small JSON client for the test's own calls (fixtures, checks).
type api struct {
	t  testing.TB
	cl *openstack.Cloud
}

func (a api) do(method, service, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sc := a.cl.Compute
	switch service {
	case "volume":
		sc = a.cl.Volume
	case "image":
		sc = a.cl.Image
	case "network":
		sc = a.cl.Network
	}
	u := sc.ServiceURL(strings.Split(path, "/")...)
	if strings.Contains(path, "?") { // keep the query's "/" and "?" as they are
		u = sc.ServiceURL() + path
	}
	opts := &gophercloud.RequestOpts{OkCodes: []int{200, 201, 202, 204}}
	var err error
	switch method {
	case "GET":
		_, err = sc.Get(ctx, u, out, opts)
	case "POST":
		if out == nil {
			opts.KeepResponseBody = false
		}
		_, err = sc.Post(ctx, u, body, out, opts)
	case "PUT":
		_, err = sc.Put(ctx, u, body, out, opts)
	case "DELETE":
		_, err = sc.Delete(ctx, u, opts)
	}
	return err
}

func (a api) must(method, service, path string, body, out any) {
	a.t.Helper()
	if err := a.do(method, service, path, body, out); err != nil {
		a.t.Fatalf("%s %s %s: %v", method, service, path, err)
	}
}

// wait polls fn until it returns true.
func (a api) wait(what string, timeout time.Duration, fn func() (bool, error)) {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := fn()
		if err != nil {
			a.t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Second)
	}
}

func (a api) volumeStatus(id string) (string, error) {
	var v struct {
		Volume struct {
			Status string `json:"status"`
		} `json:"volume"`
	}
	err := a.do("GET", "volume", "volumes/"+id, nil, &v)
	if isGone(err) {
		return "gone", nil
	}
	return v.Volume.Status, err
}

func isGone(err error) bool { return err != nil && strings.Contains(err.Error(), "404") }

func (a api) serverGone(id string) {
	a.t.Helper()
	a.do("DELETE", "compute", "servers/"+id, nil, nil)
	a.wait("server "+id+" deleted", 5*time.Minute, func() (bool, error) {
		var s map[string]any
		err := a.do("GET", "compute", "servers/"+id, nil, &s)
		if isGone(err) {
			return true, nil
		}
		return false, nil
	})
}

func (a api) volumeGone(id string) {
	a.t.Helper()
	a.wait("volume "+id+" deletable", 5*time.Minute, func() (bool, error) {
		st, err := a.volumeStatus(id)
		return st == "gone" || st == "available" || st == "error", err
	})
	a.do("DELETE", "volume", "volumes/"+id, nil, nil)
	a.wait("volume "+id+" deleted", 5*time.Minute, func() (bool, error) {
		st, err := a.volumeStatus(id)
		return st == "gone", err
	})
}

// inventory is what a restore could leave behind, by kind.
type inventory map[string][]string

func (a api) inventory() inventory {
	a.t.Helper()
	inv := inventory{}
	var imgs struct {
		Images []struct{ ID, Name string } `json:"images"`
	}
	a.must("GET", "image", "images?limit=1000&os_hidden=true", nil, &imgs)
	var imgs2 struct {
		Images []struct{ ID, Name string } `json:"images"`
	}
	a.must("GET", "image", "images?limit=1000", nil, &imgs2)
	for _, i := range append(imgs.Images, imgs2.Images...) {
		inv["image"] = append(inv["image"], i.ID+" "+i.Name)
	}
	var vols struct {
		Volumes []struct{ ID, Name string } `json:"volumes"`
	}
	a.must("GET", "volume", "volumes", nil, &vols)
	for _, v := range vols.Volumes {
		inv["volume"] = append(inv["volume"], v.ID+" "+v.Name)
	}
	var atts struct {
		Attachments []struct {
			ID       string `json:"id"`
			VolumeID string `json:"volume_id"`
		} `json:"attachments"`
	}
	a.must("GET", "volume", "attachments", nil, &atts)
	for _, x := range atts.Attachments {
		inv["attachment"] = append(inv["attachment"], x.ID+" "+x.VolumeID)
	}
	var srv struct {
		Servers []struct{ ID, Name string } `json:"servers"`
	}
	a.must("GET", "compute", "servers", nil, &srv)
	for _, s := range srv.Servers {
		inv["server"] = append(inv["server"], s.ID+" "+s.Name)
	}
	var ports struct {
		Ports []struct {
			ID string `json:"id"`
		} `json:"ports"`
	}
	a.must("GET", "network", "ports?project_id="+a.cl.ProjectID(), nil, &ports)
	for _, p := range ports.Ports {
		inv["port"] = append(inv["port"], p.ID)
	}
	var kps struct {
		Keypairs []struct {
			Keypair struct{ Name string } `json:"keypair"`
		} `json:"keypairs"`
	}
	a.must("GET", "compute", "os-keypairs", nil, &kps)
	for _, k := range kps.Keypairs {
		inv["keypair"] = append(inv["keypair"], k.Keypair.Name)
	}
	for k := range inv {
		sort.Strings(inv[k])
	}
	return inv
}

// noOwnLeaks fails the test when something appeared since before that a
// restore made: named with prefix (its server, volumes, ports, key pairs),
// a restore temporary, an attachment of such a volume, or a port of the
// restored server. Only what appeared counts (a restore never deletes
// what existed), and only what is the restore's: other engineers' tests
// create and delete on the same cloud at the same time.
func noOwnLeaks(t *testing.T, a api, before inventory, prefix string, res *openstack.RestoreResult) {
	t.Helper()
	after := a.inventory()
	ours := func(item string) bool {
		_, name, _ := strings.Cut(item, " ")
		return strings.Contains(name, prefix) || strings.HasPrefix(name, "cairn-tmp-restore-")
	}
	vols := map[string]bool{}
	if res != nil {
		for _, v := range res.Volumes {
			vols[v.ID] = true
		}
	}
	for _, kind := range []string{"image", "volume", "server"} {
		for _, x := range addedItems(before[kind], after[kind]) {
			if ours(x) {
				t.Errorf("%s left behind: %s", kind, x)
				id, _, _ := strings.Cut(x, " ")
				vols[id] = kind == "volume"
			}
		}
	}
	for _, x := range addedItems(before["keypair"], after["keypair"]) {
		if strings.Contains(x, prefix) || (res != nil && res.Keypair == x) {
			t.Errorf("key pair left behind: %s", x)
		}
	}
	for _, x := range addedItems(before["attachment"], after["attachment"]) {
		if _, vol, _ := strings.Cut(x, " "); vols[vol] {
			t.Errorf("attachment left behind: %s", x)
		}
	}
	for _, id := range addedItems(before["port"], after["port"]) {
		var b struct {
			Port struct {
				Name     string `json:"name"`
				DeviceID string `json:"device_id"`
			} `json:"port"`
		}
		if a.do("GET", "network", "ports/"+id, nil, &b) != nil {
			continue // gone meanwhile
		}
		if strings.HasPrefix(b.Port.Name, prefix) || (res != nil && res.Server != nil && b.Port.DeviceID == res.Server.ID) {
			t.Errorf("port left behind: %s %+v", id, b.Port)
		}
	}
}

func addedItems(before, after []string) []string {
	had := map[string]bool{}
	for _, x := range before {
		had[x] = true
	}
	var out []string
	for _, x := range after {
		if !had[x] {
			out = append(out, x)
		}
	}
	return out
}

// rsDiskImage writes a sparse raw image of size bytes with random data at
// the given offsets (runs of runLen bytes); it returns the path.
func rsDiskImage(t testing.TB, dir, name string, size int64, seed uint64, offsets ...int64) string {
	t.Helper()
	path := filepath.Join(dir, name+".raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	buf := make([]byte, 4<<20)
	for _, off := range offsets {
		for i := range buf {
			buf[i] = byte(rng.Uint32())
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// rbdWrite writes a local image into a volume's RBD image (test-only
// shortcut through the backend, as REPORT.md describes).
func rbdWrite(t testing.TB, volID, path string) {
	t.Helper()
	py := `import rados, rbd, sys
c = rados.Rados(conffile=sys.argv[1]); c.connect()
io = c.open_ioctx("volumes"); img = rbd.Image(io, "volume-" + sys.argv[2])
f = open(sys.argv[3], "rb"); off = 0
while True:
    b = f.read(4 << 20)
    if not b: break
    if b.count(0) != len(b): img.write(b, off)
    off += len(b)
img.close(); io.close(); c.shutdown()`
	out, err := exec.Command("/usr/bin/python3", "-c", py, rsCephConf, volID, path).CombinedOutput()
	if err != nil {
		t.Fatalf("write %s into volume %s through Ceph: %v: %s", path, volID, err, out)
	}
}

// rbdSHA is the sha256 of a volume's first n bytes, read through Ceph.
func rbdSHA(t testing.TB, volID string, n int64) string {
	t.Helper()
	cmd := exec.Command("rbd", "-c", rsCephConf, "export", "--no-progress", "volumes/volume-"+volID, "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, io.LimitReader(out, n))
	io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rbd export of volume %s: %v: %s", volID, err, stderr.String())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// rsRepo is a new repository in a temporary directory.
func rsRepo(t testing.TB) *repo.Repository {
	t.Helper()
	r, err := repo.Init(filepath.Join(t.TempDir(), "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// rsImagePoint backs up local images as a restore point without a server
// definition (what `cairn backup --disk` makes).
func rsImagePoint(t testing.TB, r *repo.Repository, vm string, disks ...ingest.DiskSpec) *repo.RestorePoint {
	t.Helper()
	p, _, err := ingest.Backup(context.Background(), r, ingest.BackupOptions{VM: vm, Disks: disks})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func rsSuffix() string { return fmt.Sprintf("%d", time.Now().UnixNano()%1_000_000) }

func mustJSON(t testing.TB, v any) json.RawMessage {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}
