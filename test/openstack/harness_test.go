package openstack

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"golang.org/x/crypto/ssh"

	"github.com/cairn-backup/cairn/repo"
)

// Shared fixtures for backup (and restore) tests: a boot-from-volume
// server with two volumes whose bytes the test wrote through the Ceph
// backend, the built cairn binary, a leak check over everything a backup
// may create, and a fault-injecting transport.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// cairnBin builds cmd cairn once per test process.
func cairnBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cairn-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "cairn")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/cairn-backup/cairn/cli/cairn").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// bkVolume is a fixture volume with the sha256 of its written bytes.
type bkVolume struct {
	ID, Name string
	Image    string // local raw image with the bytes written into it
	SHA      string
	Size     int64
}

// bkServer is a boot-from-volume fixture server.
type bkServer struct {
	ID, Name string
	Volumes  []bkVolume // [0] boots
	Keypair  string
	PubKey   string
	NetID    string
}

// bkOptions shape a fixture server.
type bkOptions struct {
	Quiesce  bool              // image metadata asks for a quiesced snapshot
	Agent    bool              // hw_qemu_guest_agent=yes
	Tags     []string          // server tags
	Metadata map[string]string // server metadata
	NoNet    bool              // networks "none"
}

// newBFVServer creates two 1 GiB RBD volumes with known content, a key
// pair and a server booted from the first volume with the second
// attached; everything is deleted when the test ends.
func newBFVServer(t *testing.T, a api, o bkOptions) *bkServer {
	t.Helper()
	sfx := rsSuffix()
	s := &bkServer{Name: "bk-" + sfx}
	dir := t.TempDir()
	meta := map[string]string{}
	if o.Agent {
		meta["hw_qemu_guest_agent"] = "yes"
	}
	if o.Quiesce {
		meta["os_require_quiesce"] = "yes"
	}
	for i := 0; i < 2; i++ {
		v := bkVolume{Name: fmt.Sprintf("bk-%s-v%d", sfx, i), Size: 1 << 30}
		var out struct {
			Volume struct{ ID string } `json:"volume"`
		}
		a.must("POST", "volume", "volumes", map[string]any{"volume": map[string]any{"name": v.Name, "size": 1, "volume_type": "rbd"}}, &out)
		v.ID = out.Volume.ID
		t.Cleanup(func() { a.volumeGone(v.ID) })
		a.wait("volume "+v.ID+" available", 5*time.Minute, func() (bool, error) {
			st, err := a.volumeStatus(v.ID)
			if st == "error" {
				return false, fmt.Errorf("volume %s went to error", v.ID)
			}
			return st == "available", err
		})
		// Known bytes: random runs at a few offsets, zeros elsewhere, and
		// a run shared by both volumes (deduplicated once).
		v.Image = rsDiskImage(t, dir, v.Name, v.Size, uint64(i+1)*1000+uint64(len(sfx)), 0, 100<<20, int64(700+i*50)<<20, (1<<30)-(4<<20))
		rbdWrite(t, v.ID, v.Image)
		v.SHA = fileSHA(t, v.Image)
		s.Volumes = append(s.Volumes, v)
	}
	volumeAction(t, a, s.Volumes[0].ID, map[string]any{"os-set_bootable": map[string]any{"bootable": true}})
	if len(meta) > 0 {
		volumeAction(t, a, s.Volumes[0].ID, map[string]any{"os-set_image_metadata": map[string]any{"metadata": meta}})
	}
	s.Keypair, s.PubKey = newKeypair(t, a, "bk-"+sfx)
	server := map[string]any{
		"name": s.Name, "flavorRef": flavorID(t, a, "cairn.tiny"), "key_name": s.Keypair,
		"block_device_mapping_v2": []map[string]any{
			{"boot_index": 0, "uuid": s.Volumes[0].ID, "source_type": "volume", "destination_type": "volume", "delete_on_termination": false},
			{"boot_index": -1, "uuid": s.Volumes[1].ID, "source_type": "volume", "destination_type": "volume", "delete_on_termination": false},
		},
	}
	if o.Metadata != nil {
		server["metadata"] = o.Metadata
	}
	if len(o.Tags) > 0 {
		server["tags"] = o.Tags
	}
	if o.NoNet {
		server["networks"] = "none"
	} else {
		s.NetID = networkID(t, a, "cairn-net")
		server["networks"] = []map[string]any{{"uuid": s.NetID}}
	}
	s.ID = createServer(t, a, server)
	return s
}

// createServer boots a server and waits for ACTIVE; it is deleted (and
// waited for) when the test ends, before the volumes it uses.
func createServer(t *testing.T, a api, server map[string]any) string {
	t.Helper()
	var out struct {
		Server struct{ ID string } `json:"server"`
	}
	a.must("POST", "compute", "servers", map[string]any{"server": server}, &out)
	id := out.Server.ID
	t.Cleanup(func() { a.serverGone(id) })
	a.wait("server "+id+" ACTIVE", 5*time.Minute, func() (bool, error) {
		var b struct {
			Server struct {
				Status string         `json:"status"`
				Fault  map[string]any `json:"fault"`
			} `json:"server"`
		}
		if err := a.do("GET", "compute", "servers/"+id, nil, &b); err != nil {
			return false, err
		}
		if b.Server.Status == "ERROR" {
			return false, fmt.Errorf("server %s went to ERROR: %v", id, b.Server.Fault)
		}
		return b.Server.Status == "ACTIVE", nil
	})
	return id
}

func newKeypair(t *testing.T, a api, name string) (string, string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))
	a.must("POST", "compute", "os-keypairs", map[string]any{"keypair": map[string]any{"name": name, "public_key": key}}, nil)
	t.Cleanup(func() { a.do("DELETE", "compute", "os-keypairs/"+name, nil, nil) })
	return name, key
}

func flavorID(t *testing.T, a api, name string) string {
	t.Helper()
	var b struct {
		Flavors []struct{ ID, Name string } `json:"flavors"`
	}
	a.must("GET", "compute", "flavors", nil, &b)
	for _, f := range b.Flavors {
		if f.Name == name {
			return f.ID
		}
	}
	// Not (yet) created by scripts/openstack-up.sh: a flavor of our own.
	var out struct {
		Flavor struct{ ID string } `json:"flavor"`
	}
	if _, err := a.cl.Compute.Post(context.Background(), a.cl.Compute.ServiceURL("flavors"),
		map[string]any{"flavor": map[string]any{"name": "bk-" + name + "-" + rsSuffix(), "vcpus": 1, "ram": 256, "disk": 1}}, &out,
		&gophercloud.RequestOpts{OkCodes: []int{200}}); err != nil {
		t.Fatalf("create flavor: %v", err)
	}
	t.Cleanup(func() { a.do("DELETE", "compute", "flavors/"+out.Flavor.ID, nil, nil) })
	return out.Flavor.ID
}

func networkID(t *testing.T, a api, name string) string {
	t.Helper()
	var b struct {
		Networks []struct{ ID, Name string } `json:"networks"`
	}
	a.must("GET", "network", "networks?name="+name, nil, &b)
	if len(b.Networks) == 0 {
		t.Fatalf("network %s missing (scripts/openstack-up.sh creates it)", name)
	}
	return b.Networks[0].ID
}

// leakSet lists what a backup may create: snapshots, volumes, images and
// attachments of every project (the test user is admin).
type leakSet map[string]map[string]string // kind -> id -> description

func (a api) leakSet() leakSet {
	a.t.Helper()
	ls := leakSet{"snapshot": {}, "volume": {}, "image": {}, "attachment": {}}
	var snaps struct {
		Snapshots []struct{ ID, Name, Status, VolumeID string } `json:"snapshots"`
	}
	a.must("GET", "volume", "snapshots/detail?all_tenants=1", nil, &snaps)
	for _, s := range snaps.Snapshots {
		ls["snapshot"][s.ID] = s.Name + " (" + s.Status + ")"
	}
	var vols struct {
		Volumes []struct{ ID, Name, Status string } `json:"volumes"`
	}
	a.must("GET", "volume", "volumes/detail?all_tenants=1", nil, &vols)
	for _, v := range vols.Volumes {
		ls["volume"][v.ID] = v.Name + " (" + v.Status + ")"
	}
	var imgs struct {
		Images []struct{ ID, Name, Status string } `json:"images"`
	}
	a.must("GET", "image", "images?limit=1000", nil, &imgs)
	for _, i := range imgs.Images {
		ls["image"][i.ID] = i.Name + " (" + i.Status + ")"
	}
	var atts struct {
		Attachments []struct {
			ID       string `json:"id"`
			VolumeID string `json:"volume_id"`
		} `json:"attachments"`
	}
	a.must("GET", "volume", "attachments?all_tenants=1", nil, &atts)
	for _, x := range atts.Attachments {
		ls["attachment"][x.ID] = "of volume " + x.VolumeID
	}
	return ls
}

// isOurs tells a backup's leftovers from what other tests (restore,
// running at the same time on a shared cloud) create.
var backupTempName = regexp.MustCompile(`^(snapshot for )?cairn-tmp-[0-9]{8}t`)

// newSince lists what is in after but not in before and looks like a
// backup temporary (or is an attachment/snapshot of the watched volumes).
func newSince(before, after leakSet, watched map[string]bool) []string {
	var out []string
	for kind, m := range after {
		for id, desc := range m {
			if _, ok := before[kind][id]; ok {
				continue
			}
			name := strings.SplitN(desc, " (", 2)[0]
			if (backupTempName.MatchString(name) && ofWatched(name, watched)) || (kind == "attachment" && watched[strings.TrimPrefix(desc, "of volume ")]) {
				out = append(out, kind+" "+id+" "+desc)
			}
		}
	}
	sort.Strings(out)
	return out
}

// ofWatched reports whether a temporary's name carries one of the watched
// server ids (cairn names temporaries cairn-tmp-<run>-<server[:8]>-…), so
// that backups of other tests running at the same time are not counted.
func ofWatched(name string, watched map[string]bool) bool {
	for id := range watched {
		if len(id) >= 8 && strings.Contains(name, "-"+id[:8]+"-") {
			return true
		}
	}
	return false
}

// noLeaks fails the test when a backup temporary appeared since before.
// Deletions finish asynchronously in Cinder, so it waits a little.
func noLeaks(t *testing.T, a api, before leakSet, watched map[string]bool) {
	t.Helper()
	var left []string
	for i := 0; i < 30; i++ {
		left = newSince(before, a.leakSet(), watched)
		if len(left) == 0 {
			return
		}
		time.Sleep(2 * time.Second)
	}
	t.Errorf("temporary resources left behind:\n%s", strings.Join(left, "\n"))
}

// diskSHA is the sha256 of a restore point disk read back from the repository.
func diskSHA(t *testing.T, r *repo.Repository, p *repo.RestorePoint, name string) (string, int64) {
	t.Helper()
	dr, err := r.OpenDisk(p, name, 64<<20)
	if err != nil {
		t.Fatalf("restore point %s: disk %s: %v", p.ID, name, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(dr, 0, dr.Size())); err != nil {
		t.Fatalf("read disk %s: %v", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), dr.Size()
}

// runCairn runs the built binary with the test cloud's environment.
func runCairn(t *testing.T, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cairnBin(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err = cmd.Run()
	return so.String(), se.String(), err
}

// cloudEnv is the environment that points the binary at the test cloud.
func cloudEnv(journal string) []string {
	return []string{"OS_CLIENT_CONFIG_FILE=" + rsCloudsYAML, "OS_CLOUD=" + rsCloudName, "CAIRN_JOURNAL_DIR=" + journal}
}

// faultTransport injects one failure into chosen calls and forwards the
// rest to the cloud. Beyond restore's faultProxy it can lose an answer
// after the cloud acted on the request, stall until the client gives up,
// and cut a response body (a download) after some bytes.
type faultTransport struct {
	next  http.RoundTripper
	mu    sync.Mutex
	rules []*fault
}

type fault struct {
	Method string
	Path   *regexp.Regexp
	Nth    int    // 1 = first matching call
	Status int    // answer this without forwarding
	Lose   bool   // forward, then drop the answer (the cloud did act)
	Stall  bool   // never answer (until the request's context ends)
	CutAt  int64  // forward, cut the response body after CutAt bytes
	Body   string // with Status
	seen   int
	fired  bool
}

func newFaultTransport(rules ...*fault) *faultTransport {
	return &faultTransport{next: http.DefaultTransport.(*http.Transport).Clone(), rules: rules}
}

func (ft *faultTransport) Fired() bool {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	for _, r := range ft.rules {
		if !r.fired {
			return false
		}
	}
	return true
}

var errDropped = errors.New("connection reset by peer (injected)")

func (ft *faultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ft.mu.Lock()
	var hit *fault
	for _, r := range ft.rules {
		if r.Method == req.Method && r.Path.MatchString(req.URL.Path) {
			r.seen++
			if r.seen == max(r.Nth, 1) && !r.fired {
				r.fired, hit = true, r
			}
		}
	}
	ft.mu.Unlock()
	switch {
	case hit == nil:
		return ft.next.RoundTrip(req)
	case hit.Status != 0:
		return &http.Response{StatusCode: hit.Status, Status: fmt.Sprintf("%d injected", hit.Status),
			Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(strings.NewReader(hit.Body)),
			Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
	case hit.Stall: // a call that times out on the client side
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(3 * time.Second):
			return nil, &timeoutErr{}
		}
	case hit.Lose:
		resp, err := ft.next.RoundTrip(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return nil, errDropped
	default:
		resp, err := ft.next.RoundTrip(req)
		if err != nil {
			return nil, err
		}
		resp.Body = &cutBody{r: resp.Body, left: hit.CutAt}
		return resp, nil
	}
}

type cutBody struct {
	r    io.ReadCloser
	left int64
}

func (c *cutBody) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errDropped
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

func (c *cutBody) Close() error { return c.r.Close() }

// timeoutErr looks like a client-side i/o timeout (net.Error).
type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout (injected)" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }

// volumeAction posts a volume action that answers 200 or 202.
func volumeAction(t testing.TB, a api, id string, body map[string]any) {
	t.Helper()
	sc := a.cl.Volume
	if _, err := sc.Post(context.Background(), sc.ServiceURL("volumes", id, "action"), body, nil,
		&gophercloud.RequestOpts{OkCodes: []int{200, 202}}); err != nil {
		t.Fatalf("volume %s action %v: %v", id, body, err)
	}
}
