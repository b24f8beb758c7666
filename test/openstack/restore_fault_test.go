package openstack

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/openstack"
)

// TestRestoreFaults injects a failure at each step of a restore and checks
// that the error says what failed and that nothing is left behind: no
// server, volume, port, key pair, temporary image or attachment.
func TestRestoreFaults(t *testing.T) {
	cl := rsConnect(t, "", nil)
	a := api{t, cl}
	dir := t.TempDir()
	r := rsRepo(t)
	vm := "cairn-fault-" + rsSuffix()
	p := rsImagePoint(t, r, vm,
		ingest.DiskSpec{Name: "vda", Path: rsDiskImage(t, dir, "vda", rsDiskSize, 21, 0, 600<<20)},
		ingest.DiskSpec{Name: "vdb", Path: rsDiskImage(t, dir, "vdb", rsDiskSize, 22, 10<<20)})
	base := openstack.RestoreVMOptions{Flavor: "cairn.tiny", Networks: []openstack.NetworkChoice{{Network: "cairn-net"}}}
	ctx := context.Background()

	// a volume type whose backend does not exist: Cinder puts the volume in error
	var vt struct {
		Type struct{ ID string } `json:"volume_type"`
	}
	a.must("POST", "volume", "types", map[string]any{"volume_type": map[string]any{"name": "cairn-broken-" + rsSuffix(),
		"extra_specs": map[string]string{"volume_backend_name": "no-such-backend"}}}, &vt)
	t.Cleanup(func() { a.do("DELETE", "volume", "types/"+vt.Type.ID, nil, nil) })
	var vtName struct {
		Type struct{ Name string } `json:"volume_type"`
	}
	a.must("GET", "volume", "types/"+vt.Type.ID, nil, &vtName)

	cases := []struct {
		name  string
		rules []*faultRule
		opts  func(o *openstack.RestoreVMOptions)
		want  string
	}{
		{name: "volume create error", opts: func(o *openstack.RestoreVMOptions) { o.VolumeType = vtName.Type.Name },
			want: "went to status error"},
		{name: "image upload cut", rules: []*faultRule{{Method: "PUT", Path: regexp.MustCompile(`/v2/images/[^/]+/file$`), Nth: 2, CutBody: 3 << 20}},
			want: "upload disk vdb"},
		{name: "server create 5xx", rules: []*faultRule{{Method: "POST", Path: regexp.MustCompile(`/v2\.1/servers$`), Status: 500,
			Body: `{"computeFault": {"code": 500, "message": "injected fault"}}`}}, want: "create server"},
		{name: "quota exceeded at volume create", rules: []*faultRule{{Method: "POST", Path: regexp.MustCompile(`/volumes$`), Nth: 2, Status: 413,
			Body: `{"overLimit": {"code": 413, "message": "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota."}}`}},
			want: "exceeds allowed gigabytes quota"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			proxy := newFaultProxy(c.rules...)
			fcl := rsConnect(t, "", proxy)
			a := api{t, cl}
			before := a.inventory()
			o := base
			o.Name = vm + "-" + strings.ReplaceAll(c.name, " ", "-")
			if c.opts != nil {
				c.opts(&o)
			}
			res, err := openstack.RestoreVM(ctx, fcl, r, p, o)
			if err == nil {
				removeRestored(a, res)
				t.Fatalf("restore succeeded despite the fault")
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "removed") {
				t.Errorf("error does not say what failed (%q) and that the restore cleaned up: %v", c.want, err)
			}
			if !proxy.fired() {
				t.Errorf("the fault was never injected")
			}
			noOwnLeaks(t, a, before, vm, res)
		})
	}

	t.Run("quota exceeded before anything is created", func(t *testing.T) {
		alt := rsConnect(t, rsAltProject, nil)
		a := api{t, alt}
		var q struct {
			Quota map[string]any `json:"quota_set"`
		}
		a.must("GET", "volume", "os-quota-sets/"+alt.ProjectID(), nil, &q)
		a.must("PUT", "volume", "os-quota-sets/"+alt.ProjectID(), map[string]any{"quota_set": map[string]any{"gigabytes": 1}}, nil)
		t.Cleanup(func() {
			a.must("PUT", "volume", "os-quota-sets/"+alt.ProjectID(), map[string]any{"quota_set": map[string]any{"gigabytes": q.Quota["gigabytes"]}}, nil)
		})
		before := a.inventory()
		o := base
		o.SecurityGroups = []string{"default"}
		res, err := openstack.RestoreVM(ctx, alt, r, p, o)
		if err == nil || !strings.Contains(err.Error(), "quota exceeded") || !strings.Contains(err.Error(), "volume gigabytes") {
			t.Fatalf("want a quota error naming volume gigabytes, got %v", err)
		}
		noOwnLeaks(t, a, before, vm, res)
	})

	t.Run("interrupted mid-upload", func(t *testing.T) {
		before := a.inventory()
		ictx, cancel := context.WithCancel(ctx)
		prog := &ingest.Progress{}
		o := base
		o.Name, o.Progress = vm+"-interrupted", prog
		go func() { // like SIGINT: cancel once the first disk is being uploaded
			for prog.Done.Load() < 64<<20 {
				time.Sleep(20 * time.Millisecond)
			}
			cancel()
		}()
		res, err := openstack.RestoreVM(ictx, cl, r, p, o)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Fatalf("want an interruption error, got %v", err)
		}
		noOwnLeaks(t, a, before, vm, res)
	})
}
