package openstack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

// BackupOptions control `cairn backup openstack`.
type BackupOptions struct {
	Transfer string // "glance" (default) or "attach"
	// AttachTo, with Transfer "attach": the Nova server cairn runs on (an
	// id), AttachSelf (detect it), AttachNone (Cinder host attachment) or
	// AttachAuto (backup_nova_attach.go says when a server is chosen).
	AttachTo    string
	Quiesce     string // "auto" (default: quiesce when the image asks), "require", "never"
	Pre, Post   string // shell commands around the snapshot
	HookTimeout time.Duration
	Limits      Limits
	Timeouts    Timeouts
	JournalDir  string
	Workers     int               // ingest workers per server (0: default)
	Tags        map[string]string // added to every restore point
	// Events receives progress reports; it must not block.
	Events func(Event)
	// Progress, when set, returns the ingest counters for a server.
	Progress func(s *Server) *ingest.Progress
	// failAt, in tests, fails the named step (fault injection).
	failAt string
}

// Event is one progress report.
type Event struct {
	Time     time.Time `json:"time"`
	Server   string    `json:"server"`
	ServerID string    `json:"server_id"`
	Step     string    `json:"step"`
	Message  string    `json:"message"`
}

// ServerResult is the outcome of one server's backup.
type ServerResult struct {
	Server      string          `json:"server"`
	ServerID    string          `json:"server_id"`
	Project     string          `json:"project_id"`
	PointID     string          `json:"restore_point,omitempty"`
	Consistency string          `json:"consistency,omitempty"`
	Method      string          `json:"method,omitempty"`
	Warnings    []string        `json:"warnings,omitempty"`
	Summary     *ingest.Summary `json:"summary,omitempty"`
	Step        string          `json:"failed_step,omitempty"`
	Error       string          `json:"error,omitempty"`
	// Timings are seconds per step: inspect, quota, snapshot, transfer,
	// and within transfer the cloud's clone and upload and cairn's ingest,
	// of which ingest_wait is spent waiting for disks still being prepared.
	Timings map[string]float64 `json:"timings_seconds"`
}

// StepError names the server and the step that failed.
type StepError struct {
	Server, ServerID, Step string
	Err                    error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("server %s (%s), step %s: %v", e.Server, e.ServerID, e.Step, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// ErrSomeFailed is returned by Backup when at least one server failed.
var ErrSomeFailed = errors.New("backup of some servers failed")

// backupRun is one `cairn backup openstack` invocation.
type backupRun struct {
	cl     *Cloud
	r      *repo.Repository
	o      BackupOptions
	tm     *temps
	slots  *snapshotSlots
	xfer   *semaphore.Weighted
	window int64
	evMu   sync.Mutex
	host   *attachHost // --transfer attach through Nova to this server
	hostMu sync.Mutex  // one Nova attach at a time
}

// Backup backs up each server into its own restore point. Temporaries of
// runs that were killed are cleaned up first. The results are in the
// servers' order; the error is ErrSomeFailed (details in the results) or
// a failure of the run itself.
func (cl *Cloud) Backup(ctx context.Context, r *repo.Repository, servers []*Server, o BackupOptions) ([]ServerResult, error) {
	o = o.withDefaults()
	if o.Transfer != "glance" && o.Transfer != "attach" {
		return nil, fmt.Errorf("--transfer %q: want glance or attach", o.Transfer)
	}
	run := &backupRun{cl: cl, r: r, o: o, slots: newSnapshotSlots(o.Limits),
		xfer:   semaphore.NewWeighted(int64(o.Limits.Transfers)),
		window: ingest.StreamWindow(r.Config().BlockSize, o.Workers)}
	switch {
	case o.Transfer == "attach":
		host, why, err := cl.resolveAttachHost(ctx, o.AttachTo)
		if err != nil {
			return nil, err
		}
		run.host = host
		run.event(nil, "transfer", "--transfer attach: "+why)
	case o.AttachTo != "":
		return nil, fmt.Errorf("--attach-to-server %s needs --transfer attach", o.AttachTo)
	}
	// Leftovers of killed runs first, bounded so that a resource stuck in
	// the cloud does not hold up every later backup.
	pre := o.Timeouts
	pre.Delete = min(pre.Delete, 2*time.Minute)
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	rep, err := cl.Cleanup(cctx, o.JournalDir, pre)
	cancel()
	if err != nil {
		run.event(nil, "cleanup", fmt.Sprintf("leftovers of an earlier run remain: %v", err))
	} else if rep.Deleted > 0 {
		run.event(nil, "cleanup", fmt.Sprintf("deleted %d leftovers of %d earlier runs", rep.Deleted, rep.Journals))
	}
	j, err := NewJournal(o.JournalDir, cl.AuthURL())
	if err != nil {
		return nil, err
	}
	run.tm = &temps{cl: cl, j: j, to: o.Timeouts}
	stopBeat := run.heartbeat(ctx)
	results := make([]ServerResult, len(servers))
	g := new(errgroup.Group)
	g.SetLimit(o.Limits.Servers)
	for i, s := range servers {
		g.Go(func() error {
			results[i] = run.server(ctx, s)
			return nil
		})
	}
	g.Wait()
	stopBeat()
	closeErr := j.Close()
	failed := 0
	for _, res := range results {
		if res.Error != "" {
			failed++
		}
	}
	switch {
	case closeErr != nil:
		return results, closeErr
	case ctx.Err() != nil:
		return results, ctx.Err()
	case failed > 0:
		return results, fmt.Errorf("%w: %d of %d", ErrSomeFailed, failed, len(servers))
	}
	return results, nil
}

func (o BackupOptions) withDefaults() BackupOptions {
	if o.Transfer == "" {
		o.Transfer = "glance"
	}
	if o.Quiesce == "" {
		o.Quiesce = "auto"
	}
	if o.HookTimeout == 0 {
		o.HookTimeout = 10 * time.Minute
	}
	d := DefaultLimits
	for _, p := range []struct{ v, def *int }{{&o.Limits.Servers, &d.Servers}, {&o.Limits.SnapshotsPerProject, &d.SnapshotsPerProject},
		{&o.Limits.Snapshots, &d.Snapshots}, {&o.Limits.Transfers, &d.Transfers}} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	t := DefaultTimeouts
	for _, p := range []struct{ v, def *time.Duration }{{&o.Timeouts.Snapshot, &t.Snapshot}, {&o.Timeouts.Volume, &t.Volume},
		{&o.Timeouts.Upload, &t.Upload}, {&o.Timeouts.Delete, &t.Delete}, {&o.Timeouts.Device, &t.Device}} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	if o.JournalDir == "" {
		o.JournalDir = DefaultJournalDir()
	}
	return o
}

func (b *backupRun) event(s *Server, step, msg string) {
	if b.o.Events == nil {
		return
	}
	ev := Event{Time: time.Now(), Step: step, Message: msg}
	if s != nil {
		ev.Server, ev.ServerID = s.Name, s.ID
	}
	b.evMu.Lock()
	defer b.evMu.Unlock()
	b.o.Events(ev)
}

// serverJob is the state of one server's backup.
type serverJob struct {
	b       *backupRun
	s       *Server
	def     *Definition
	res     *ServerResult
	release func(int) // snapshot slots
	disks   []*diskJob
	mu      sync.Mutex
}

func (sj *serverJob) time(step string, d time.Duration) {
	sj.mu.Lock()
	sj.res.Timings[step] += d.Seconds()
	sj.mu.Unlock()
}

func (b *backupRun) server(ctx context.Context, s *Server) (res ServerResult) {
	res = ServerResult{Server: s.Name, ServerID: s.ID, Project: s.ProjectID, Timings: map[string]float64{}}
	sj := &serverJob{b: b, s: s, res: &res}
	step := "start"
	fail := func(err error) ServerResult {
		e := &StepError{Server: s.Name, ServerID: s.ID, Step: step, Err: err}
		res.Step, res.Error = step, e.Error()
		b.event(s, "failed", e.Error())
		return res
	}
	defer func() {
		if err := b.tm.releaseServer(ctx, s.ID); err != nil {
			msg := fmt.Sprintf("temporaries left (see %s; `cairn openstack cleanup` retries): %v", b.tm.j.Path(), err)
			res.Warnings = append(res.Warnings, msg)
			if res.Error == "" {
				res.Step, res.Error = "cleanup", (&StepError{s.Name, s.ID, "cleanup", errors.New(msg)}).Error()
			}
		}
		if sj.release != nil {
			sj.release(1 << 20)
		}
	}()
	run := func(name string, f func(context.Context) error) error {
		step = name
		b.event(s, name, "")
		if b.o.failAt == name {
			return fmt.Errorf("injected failure")
		}
		start := time.Now()
		err := f(ctx)
		sj.time(name, time.Since(start))
		if err == nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		return err
	}
	if err := run("inspect", sj.inspect); err != nil {
		return fail(err)
	}
	if err := run("quota", sj.reserve); err != nil {
		return fail(err)
	}
	if err := run("snapshot", sj.snapshot); err != nil {
		return fail(err)
	}
	if err := run("transfer", sj.transfer); err != nil {
		return fail(err)
	}
	b.event(s, "done", fmt.Sprintf("restore point %s (%s, %s)", res.PointID, res.Consistency, res.Method))
	return res
}

// inspect re-reads the server and captures its definition.
func (sj *serverJob) inspect(ctx context.Context) error {
	s, err := sj.b.cl.GetServer(ctx, sj.s.ID)
	if err != nil {
		return err
	}
	sj.s = s
	sj.res.Warnings = append(sj.res.Warnings, s.Warnings...)
	if !s.Protectable() {
		return fmt.Errorf("cannot be protected: %v", s.Problems)
	}
	sj.def, err = sj.b.cl.CaptureDefinition(ctx, s)
	return err
}

// reserve checks the quotas and takes the snapshot slots.
func (sj *serverJob) reserve(ctx context.Context) error {
	n, gib := len(sj.s.Volumes), 0
	for _, v := range sj.s.Volumes {
		gib += v.Size
	}
	need := QuotaNeed{Snapshots: n, Volumes: n, Gigabytes: 2 * gib}
	if !sj.s.BootFromVolume {
		n++ // the root image snapshot
		need.Volumes++
	}
	if err := sj.b.cl.checkQuota(ctx, sj.s.ProjectID, need); err != nil {
		return err
	}
	var err error
	sj.release, err = sj.b.slots.acquire(ctx, sj.s.ProjectID, n)
	return err
}

// diskName names a disk in the restore point after its device.
func diskName(device string, i int) string {
	if device != "" {
		return path.Base(device)
	}
	return fmt.Sprintf("disk%d", i)
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// AuthURL is the Keystone URL the session authenticated at.
func (cl *Cloud) AuthURL() string { return cl.Provider.IdentityEndpoint }
