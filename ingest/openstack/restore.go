package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

// RestoreVMOptions shape a full-VM restore. Empty fields keep what the
// restore point captured.
type RestoreVMOptions struct {
	Name             string          // server name (default: the captured one)
	Networks         []NetworkChoice // default: the captured networks
	NoNetwork        bool            // boot without any network
	NewMAC           bool            // new MAC addresses even on the original networks
	Flavor           string          // name or ID (default: captured, or same size)
	SecurityGroups   []string        // names or IDs (default: captured)
	Keypair          string          // existing key pair (default: captured, recreated if needed)
	AvailabilityZone string
	VolumeType       string
	PowerOn          *bool // nil: as captured (SHUTOFF stays off)
	DryRun           bool
	KeepOnFailure    bool
	Transfer         string // "glance" (default) or "attach"
	CephConf         string // ceph.conf (with keyring) for --transfer attach on RBD
	Workers          int    // parallel readers of the repository (0: per CPU)
	Progress         *ingest.Progress
	// Note receives one line per step, for people (may be nil).
	Note func(string)
}

// NetworkChoice is one --network NET[=FIXED_IP].
type NetworkChoice struct {
	Network string `json:"network"` // name or ID
	FixedIP string `json:"fixed_ip,omitempty"`
}

// ParseNetworkChoice parses NET[=FIXED_IP].
func ParseNetworkChoice(s string) (NetworkChoice, error) {
	net, ip, _ := strings.Cut(s, "=")
	if net == "" {
		return NetworkChoice{}, fmt.Errorf("--network %q: want NETWORK or NETWORK=FIXED_IP", s)
	}
	return NetworkChoice{Network: net, FixedIP: ip}, nil
}

// RestoreResult says what a restore created (or, with DryRun, would create).
type RestoreResult struct {
	Point    string             `json:"restore_point"`
	DryRun   bool               `json:"dry_run,omitempty"`
	Plan     *RestorePlan       `json:"plan"`
	Server   *CreatedServer     `json:"server,omitempty"`
	Volumes  []CreatedVolume    `json:"volumes"`
	Ports    []CreatedPort      `json:"ports,omitempty"`
	Groups   []CreatedSG        `json:"security_groups_created,omitempty"`
	Keypair  string             `json:"keypair_created,omitempty"`
	Notes    []string           `json:"notes,omitempty"`
	Timings  map[string]float64 `json:"timings_seconds,omitempty"`
	Bytes    int64              `json:"bytes"`
	Duration float64            `json:"duration_seconds"`
}

// CreatedServer is the recreated server.
type CreatedServer struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Flavor string `json:"flavor"`
}

// CreatedPort is one port of the restored server.
type CreatedPort struct {
	ID      string   `json:"id"`
	Network string   `json:"network"`
	MAC     string   `json:"mac_address"`
	IPs     []string `json:"fixed_ips"`
	// CreatedBy is "nova" (deleted with the server) or "cairn" (kept by
	// Nova when the server is deleted: a port with a chosen MAC address,
	// or one without security groups next to ports with groups).
	CreatedBy         string `json:"created_by"`
	DeletedWithServer bool   `json:"deleted_with_server"`
}

// CreatedSG is a security group recreated from the restore point.
type CreatedSG struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Rules int    `json:"rules"`
}

// CreatedVolume is one volume filled with a disk.
type CreatedVolume struct {
	Disk     string `json:"disk"`
	ID       string `json:"id"`
	Name     string `json:"name"`
	SizeGB   int    `json:"size_gb"`
	Type     string `json:"volume_type"`
	Bootable bool   `json:"bootable"`
}

// restorer carries one restore's state.
type restorer struct {
	cloud    *Cloud
	repo     *repo.Repository
	point    *repo.RestorePoint
	def      *Definition // nil for restore points of local images
	opts     RestoreVMOptions
	undo     restoreUndo
	progress *ingest.Progress
	mu       sync.Mutex
	result   *RestoreResult
	ownPorts map[string]bool // ports cairn created (Nova keeps them on delete)
}

func newRestorer(cl *Cloud, r *repo.Repository, p *repo.RestorePoint, o RestoreVMOptions) (*restorer, error) {
	rs := &restorer{cloud: cl, repo: r, point: p, opts: o, progress: o.Progress, ownPorts: map[string]bool{},
		result: &RestoreResult{Point: p.ID, DryRun: o.DryRun, Timings: map[string]float64{}}}
	if rs.progress == nil {
		rs.progress = &ingest.Progress{}
	}
	if rs.progress.StartTime.IsZero() {
		rs.progress.StartTime = time.Now()
	}
	switch o.Transfer {
	case "", "glance", "attach":
	default:
		return nil, fmt.Errorf("--transfer %q: use glance or attach", o.Transfer)
	}
	if len(p.Definition) > 0 && p.Source == "openstack" {
		var d Definition
		if err := json.Unmarshal(p.Definition, &d); err != nil {
			return nil, fmt.Errorf("restore point %s: its OpenStack definition does not decode: %w", p.ID, err)
		}
		if d.Version > DefinitionVersion {
			return nil, fmt.Errorf("restore point %s was written by a newer cairn (definition version %d); upgrade cairn to restore it", p.ID, d.Version)
		}
		rs.def = &d
	}
	return rs, nil
}

func (rs *restorer) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	rs.mu.Lock()
	rs.result.Notes = append(rs.result.Notes, msg)
	rs.mu.Unlock()
	if rs.opts.Note != nil {
		rs.opts.Note(msg)
	}
}

func (rs *restorer) created(kind, id, name string) {
	if rs.opts.Note != nil {
		rs.opts.Note(fmt.Sprintf("created %s %s (%s)", kind, id, name))
	}
}

func (rs *restorer) timing(step string, d time.Duration) {
	rs.mu.Lock()
	rs.result.Timings[step] += d.Seconds()
	rs.mu.Unlock()
}

// finish runs the cleanup: temporaries always, everything created when err
// is not nil (unless KeepOnFailure). It returns err with what was left.
func (rs *restorer) finish(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	all := err != nil && !rs.opts.KeepOnFailure
	left, cerr := rs.undo.run(all, restoreDeleteTimeout+5*time.Minute)
	if err == nil {
		if cerr != nil {
			return fmt.Errorf("restore done, but temporary resources were left behind (%s): %w", strings.Join(left, ", "), cerr)
		}
		return nil
	}
	switch {
	case cerr != nil:
		return fmt.Errorf("%w; cleanup could not remove %s: %v", err, strings.Join(left, ", "), cerr)
	case rs.opts.KeepOnFailure:
		var kept []string
		for _, s := range rs.undo.steps {
			kept = append(kept, fmt.Sprintf("%s %s", s.Kind, s.ID))
		}
		if len(kept) > 0 {
			return fmt.Errorf("%w; kept for inspection (--keep-on-failure): %s", err, strings.Join(kept, ", "))
		}
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("restore interrupted; everything it had created was removed: %w", err)
	}
	return fmt.Errorf("%w; everything the restore had created was removed", err)
}
