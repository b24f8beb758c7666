package openstack

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/repo"
)

func init() {
	pollInterval, maxPoll = 5*time.Millisecond, 20*time.Millisecond
	settleTime = 50 * time.Millisecond
}

func fakeBackup(t *testing.T, f *bkFake, to Timeouts) ([]ServerResult, error, string) {
	t.Helper()
	cl, err := Connect(context.Background(), f.config())
	if err != nil {
		t.Fatal(err)
	}
	servers, err := cl.ListServers(context.Background(), Selection{Servers: []string{"web1"}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(filepath.Join(t.TempDir(), "repo"), repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	dir := t.TempDir()
	res, err := cl.Backup(context.Background(), r, servers, BackupOptions{JournalDir: dir, Timeouts: to})
	return res, err, dir
}

func TestBackupQuotaExhausted(t *testing.T) {
	f := newBkFake(t)
	f.quota["snapshots"] = [3]int{10, 9, 0}
	res, err, _ := fakeBackup(t, f, Timeouts{})
	if !errors.Is(err, ErrSomeFailed) || res[0].Step != "quota" || !strings.Contains(res[0].Error, "openstack quota set --snapshots") ||
		!strings.Contains(res[0].Error, "web1") {
		t.Fatalf("err %v, result %+v", err, res[0])
	}
	if f.n != 0 {
		t.Errorf("%d snapshots were requested despite the quota", f.n)
	}
}

func TestBackupSnapshotOverLimit(t *testing.T) {
	f := newBkFake(t)
	f.snapshotPost = 413
	res, _, dir := fakeBackup(t, f, Timeouts{})
	if res[0].Step != "snapshot" || !strings.Contains(res[0].Error, "quota is exhausted") || !strings.Contains(res[0].Error, "SnapshotLimitExceeded") {
		t.Fatalf("result %+v", res[0])
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(left) != 0 {
		t.Errorf("journal left: %v", left)
	}
}

func TestBackupBackendCannotSnapshot(t *testing.T) {
	f := newBkFake(t)
	f.snapshotStatus = "error"
	res, _, dir := fakeBackup(t, f, Timeouts{})
	if res[0].Step != "snapshot" || !strings.Contains(res[0].Error, `status "error"`) || !strings.Contains(res[0].Error, "does not support snapshots") {
		t.Fatalf("result %+v", res[0])
	}
	if len(f.snapshots) != 0 || len(f.deleted) != 2 {
		t.Errorf("snapshots left %v, deleted %v; want the two failed snapshots deleted", f.snapshots, f.deleted)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(left) != 0 {
		t.Errorf("journal left: %v", left)
	}
}

// A snapshot that never leaves "creating" cannot be deleted: the backup
// fails with a timeout, keeps the journal, and a later cleanup removes the
// snapshot once the backend has finished.
func TestBackupStatusTimeoutThenCleanup(t *testing.T) {
	f := newBkFake(t)
	f.snapshotStatus = "creating"
	res, err, dir := fakeBackup(t, f, Timeouts{Snapshot: 50 * time.Millisecond, Delete: 50 * time.Millisecond})
	if res[0].Step != "snapshot" || !strings.Contains(res[0].Error, "still \"creating\"") {
		t.Fatalf("result %+v", res[0])
	}
	if err == nil || !strings.Contains(err.Error(), "openstack cleanup") {
		t.Errorf("run error %v; want it to point at `cairn openstack cleanup`", err)
	}
	if len(f.snapshots) == 0 {
		t.Fatal("the creating snapshots vanished")
	}
	f.mu.Lock()
	for id := range f.snapshots {
		f.snapshots[id] = "available"
	}
	f.mu.Unlock()
	cl, err := Connect(context.Background(), f.config())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := cl.Cleanup(context.Background(), dir, Timeouts{Delete: time.Second})
	if err != nil || rep.Journals != 1 || rep.Deleted != 2 || len(f.snapshots) != 0 {
		t.Fatalf("cleanup: %v %+v, snapshots left %v", err, rep, f.snapshots)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(left) != 0 {
		t.Errorf("journal left after cleanup: %v", left)
	}
}

// An image-backed server whose Nova image snapshot receives no data (a
// hypervisor driver that does not upload, or uploads nothing): the backup
// fails at the snapshot step with an error that says so, deletes the
// image, and takes no volume snapshot.
func TestBackupEmptyRootSnapshot(t *testing.T) {
	for mode, want := range map[string]string{
		"queued": "never received data",
		"empty":  "holds no data",
	} {
		t.Run(mode, func(t *testing.T) {
			f := newBkFake(t)
			f.rootSnapshot = mode
			res, err, dir := fakeBackup(t, f, Timeouts{})
			if !errors.Is(err, ErrSomeFailed) || res[0].Step != "snapshot" || !strings.Contains(res[0].Error, want) ||
				!strings.Contains(res[0].Error, "web1") {
				t.Fatalf("err %v, result %+v; want a failure at the snapshot step saying %q", err, res[0], want)
			}
			t.Logf("error: %s", res[0].Error)
			if res[0].Method != MethodNovaImage {
				t.Errorf("method %q, want %s", res[0].Method, MethodNovaImage)
			}
			if len(f.images) != 0 || len(f.deleted) != 1 {
				t.Errorf("snapshot images left %v, deleted %v; want the one image deleted", f.images, f.deleted)
			}
			if len(f.snapshots) != 0 {
				t.Errorf("volume snapshots %v taken after the root snapshot failed", f.snapshots)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(left) != 0 {
				t.Errorf("journal left: %v", left)
			}
		})
	}
}

// A snapshot request whose connection dies without an answer, and whose
// snapshot the API creates only afterwards (SIGTERM or a network cut in
// mid-request): the backup fails, waits for the create to settle, finds
// the snapshot by its name and deletes it.
func TestBackupLostAnswerLateResource(t *testing.T) {
	f := newBkFake(t)
	f.lateSnapshot = settleTime / 2
	res, _, dir := fakeBackup(t, f, Timeouts{})
	if res[0].Step != "snapshot" {
		t.Fatalf("result %+v; want a failure at the snapshot step", res[0])
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.snapshots) != 0 || len(f.deleted) != 1 || f.deleted[0] != "snap1" {
		t.Errorf("snapshots left %v, deleted %v; want the late snapshot snap1 found by name and deleted", f.snapshots, f.deleted)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.journal")); len(left) != 0 {
		t.Errorf("journal left: %v", left)
	}
}

func TestConnectErrors(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "http://" + ln.Addr().String() + "/v3"
	ln.Close()
	f := newBkFake(t)
	unauthorized := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(401)
		w.Write([]byte(`{"error": {"code": 401, "message": "The request you have made requires authentication."}}`))
	}))
	defer unauthorized.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing configured", Config{}, "--os-cloud"},
		{"not a URL", Config{AuthURL: "keystone:5000"}, "not an http(s) URL"},
		{"wrong port", Config{AuthURL: closed, Username: "a", Password: "b", ProjectName: "p"}, "check the host and port"},
		{"wrong path", Config{AuthURL: notFound.URL + "/wrong/v3", Username: "a", Password: "b", ProjectName: "p"}, "the path is probably wrong"},
		{"bad credentials", Config{AuthURL: unauthorized.URL + "/v3", Username: "a", Password: "b", ProjectName: "p"}, "refused the credentials"},
		{"unknown cloud", Config{Cloud: "nope"}, "clouds.yaml"},
		{"works", f.config(), ""},
	}
	os.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(t.TempDir(), "none.yaml"))
	for _, c := range cases {
		_, err := Connect(context.Background(), c.cfg)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

func TestCloudsYAMLAndDefaults(t *testing.T) {
	f := newBkFake(t)
	dir := t.TempDir()
	y := "clouds:\n  c1:\n    auth:\n      auth_url: " + f.srv.URL + "/identity/v3\n      username: admin\n      password: secret\n      project_name: admin\n    region_name: RegionOne\n" +
		"  app:\n    auth_type: v3applicationcredential\n    auth:\n      auth_url: https://keystone.example:443/identity/v3\n      application_credential_id: abc\n      application_credential_secret: s\n"
	os.WriteFile(filepath.Join(dir, "clouds.yaml"), []byte(y), 0o600)
	t.Setenv("OS_CLIENT_CONFIG_FILE", filepath.Join(dir, "clouds.yaml"))
	cl, err := Connect(context.Background(), Config{Cloud: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if cl.ProjectID() != "p1" || !cl.IsAdmin() || cl.Region != "RegionOne" || cl.Compute == nil || cl.Volume == nil {
		t.Errorf("cloud: project %q admin %v region %q", cl.ProjectID(), cl.IsAdmin(), cl.Region)
	}
	r, err := Config{Cloud: "app"}.resolve()
	if err != nil || r.auth.ApplicationCredentialID != "abc" || r.auth.Scope != nil || r.auth.IdentityEndpoint != "https://keystone.example:443/identity/v3" {
		t.Errorf("application credential: %+v %v", r, err)
	}
	r, err = Config{AuthURL: "https://k:443/identity/v3", Username: "u", Password: "p", ProjectName: "x"}.resolve()
	if err != nil || r.auth.DomainName != "Default" || r.auth.Scope.DomainName != "Default" {
		t.Errorf("default domains: %+v %v", r, err)
	}
	r, err = Config{AuthURL: "https://k/v3", Username: "u", Password: "p", SystemScope: "all", Insecure: true}.resolve()
	if err != nil || !r.auth.Scope.System || !r.tls.InsecureSkipVerify {
		t.Errorf("system scope / insecure: %+v %v", r, err)
	}
	rep := cl.Check(context.Background())
	if len(rep.Services) != 5 || rep.ProjectID != "p1" {
		t.Errorf("check: %+v", rep)
	}
}

func TestJournalReplay(t *testing.T) {
	dir := t.TempDir()
	j, err := NewJournal(dir, "http://k/v3")
	if err != nil {
		t.Fatal(err)
	}
	snap := Temp{Kind: KindSnapshot, Name: j.TempName("server-1234567890", "snap"), Server: "s"}
	vol := Temp{Kind: KindVolume, Name: j.TempName("s", "vol"), Server: "s"}
	img := Temp{Kind: KindImage, Name: j.TempName("s", "img"), Server: "s"}
	j.Intent(snap)
	snap.ID = "snap-id"
	j.Created(snap)
	j.Intent(vol) // answer lost: no id
	j.Intent(img)
	img.ID = "img-id"
	j.Created(img)
	j.Deleted(img)
	if js, _ := StaleJournals(dir); len(js) != 0 {
		t.Fatalf("a live run's journal was taken as stale")
	}
	j.f.Write([]byte(`{"op":"created","kind":"vol`)) // torn line of a killed run
	j.f.Close()                                      // the run dies
	js, err := StaleJournals(dir)
	if err != nil || len(js) != 1 {
		t.Fatalf("stale journals: %v %v", js, err)
	}
	live := js[0].Live()
	if len(live) != 2 || live[0].Kind != KindVolume || live[0].ID != "" || live[1].ID != "snap-id" || js[0].Cloud != "http://k/v3" {
		t.Fatalf("live temporaries %+v", live)
	}
	js[0].Deleted(live[0])
	js[0].Deleted(live[1])
	if err := js[0].Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 0 {
		t.Errorf("journal not removed: %v", left)
	}
}

func TestQuiesceInfoAndBootVolume(t *testing.T) {
	for _, c := range []struct {
		props        map[string]string
		requested    bool
		could, advis bool
	}{
		{map[string]string{"hw_qemu_guest_agent": "yes", "os_require_quiesce": "yes"}, true, true, false},
		{map[string]string{"hw_qemu_guest_agent": "True", "hw_require_fsfreeze": "yes"}, true, true, false},
		{map[string]string{"hw_qemu_guest_agent": "yes"}, false, true, true},
		{map[string]string{"os_require_quiesce": "yes"}, false, false, true},
		{nil, false, false, false},
	} {
		q := quiesceInfo(c.props)
		if q.Requested != c.requested || q.CouldQuiesce != c.could || (q.Advice != "") != c.advis {
			t.Errorf("%v: %+v", c.props, q)
		}
	}
	s := &Server{BootFromVolume: true, Volumes: []Volume{{ID: "b", Device: "/dev/vdb", Bootable: true, BootIndex: -1}, {ID: "a", Device: "/dev/vda", BootIndex: -1}}}
	markBootVolume(s)
	if s.Volumes[0].ID != "a" || s.Volumes[0].BootIndex != 0 && s.Volumes[0].Bootable {
		// the bootable volume wins when no root device name is known
	}
	if s.Volumes[0].ID != "b" || s.Volumes[0].BootIndex != 0 || s.Volumes[1].BootIndex != -1 {
		t.Errorf("boot volume: %+v", s.Volumes)
	}
	s = &Server{BootFromVolume: true, RootDevice: "/dev/vdb", Volumes: []Volume{{ID: "a", Device: "/dev/vda", Bootable: true}, {ID: "b", Device: "/dev/vdb"}}}
	markBootVolume(s)
	if s.Volumes[0].ID != "b" || s.Volumes[0].BootIndex != 0 {
		t.Errorf("root device name: %+v", s.Volumes)
	}
}

func TestSelection(t *testing.T) {
	ns := novaServer{ID: "id1", Name: "web-1", Tags: []string{"a", "b"}, Metadata: map[string]string{"k": "v"}, TenantID: "p"}
	for _, c := range []struct {
		sel  Selection
		want bool
	}{
		{Selection{}, true},
		{Selection{Servers: []string{"web-1"}}, true},
		{Selection{Servers: []string{"id1"}}, true},
		{Selection{Servers: []string{"web-2"}}, false},
		{Selection{NamePattern: "web-*"}, true},
		{Selection{NamePattern: "db-*"}, false},
		{Selection{Tags: []string{"a", "b"}}, true},
		{Selection{Tags: []string{"a", "c"}}, false},
		{Selection{Metadata: map[string]string{"k": "v"}}, true},
		{Selection{Metadata: map[string]string{"k": "w"}}, false},
		{Selection{Project: "q"}, false},
	} {
		if got := c.sel.matches(ns); got != c.want {
			t.Errorf("%+v: %v", c.sel, got)
		}
	}
}

func TestConnectionReader(t *testing.T) {
	if _, err := connectionReader(map[string]any{"driver_volume_type": "iscsi"}, 1); err == nil || !strings.Contains(err.Error(), "--transfer glance") {
		t.Errorf("iscsi: %v", err)
	}
	if _, err := connectionReader(map[string]any{"driver_volume_type": "nfs", "data": map[string]any{"export": "h:/x", "name": "volume-1", "mount_point_base": t.TempDir()}}, 1); err == nil || !strings.Contains(err.Error(), "not mounted") {
		t.Errorf("nfs: %v", err)
	}
}
