package libvirt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

// Methods of reading a domain's disks.
const (
	MethodAuto     = "auto"     // backup API when the domain runs and libvirt has it, else snapshot; disk files when shut off
	MethodBackup   = "backup"   // libvirt backup API, pull mode (NBD), with checkpoints
	MethodSnapshot = "snapshot" // disk-only external snapshot, read the frozen base, blockcommit --active --pivot
	MethodOffline  = "offline"  // shut-off domain: qemu-nbd over the disk files, checkpoint bitmaps
)

// Restore point tags written by the strategy.
const (
	TagCheckpoint = "libvirt.checkpoint" // checkpoint created by this backup ("" when none)
	TagMethod     = "libvirt.method"
	TagKind       = "libvirt.kind" // "full" or "incremental"
	TagUUID       = "libvirt.uuid"
)

// checkpointPrefix marks checkpoints that cairn created and may delete.
const checkpointPrefix = "cairn-"

// Options configure the backup of one domain.
type Options struct {
	Method     string        // MethodAuto ("") or one of the others
	Full       bool          // ignore the checkpoint chain: full backup, new chain
	Quiesce    bool          // freeze guest file systems through the guest agent
	Suspend    bool          // pause the guest while the point in time is taken
	MaxSuspend time.Duration // bound on a suspension (default 10 s)
	Pre, Post  string        // shell commands run (on this machine) before and after the point in time
	SocketDir  string        // directory on the hypervisor for NBD sockets (default /var/tmp)
	Retries    int           // attempts for transient libvirt errors (default 3)
	Tags       map[string]string
	Workers    int
	Progress   *ingest.Progress
	Warn       func(msg string) // notes and warnings for the user (default: dropped)
}

// Result is what the backup of one domain did.
type Result struct {
	Domain      string         `json:"domain"`
	Method      string         `json:"method"`
	Kind        string         `json:"kind"` // "full" or "incremental"
	Consistency string         `json:"consistency"`
	Checkpoint  string         `json:"checkpoint,omitempty"`
	Base        string         `json:"base,omitempty"` // restore point the incremental continues
	ChangedRead int64          `json:"changed_bytes,omitempty"`
	Notes       []string       `json:"notes,omitempty"`
	Summary     ingest.Summary `json:"summary"`
}

// job is one domain's backup in progress.
type job struct {
	c      *Conn
	r      *repo.Repository
	o      Options
	dom    golibvirt.Domain
	name   string
	uuid   string
	xml    *libvirtxml.Domain
	disks  []disk
	def    Definition
	base   *repo.RestorePoint // newest restore point whose checkpoint still exists
	baseCP string
	res    *Result
}

func (j *job) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	j.res.Notes = append(j.res.Notes, msg)
	if j.o.Warn != nil {
		j.o.Warn(j.name + ": " + msg)
	}
}

// Backup backs up one domain into r and commits one restore point. The
// caller holds a shared repository lock.
func (c *Conn) Backup(ctx context.Context, r *repo.Repository, name string, o Options) (*Result, error) {
	if o.MaxSuspend <= 0 {
		o.MaxSuspend = 10 * time.Second
	}
	if o.SocketDir == "" {
		o.SocketDir = "/var/tmp"
	}
	if o.Retries <= 0 {
		o.Retries = 3
	}
	if o.Progress == nil {
		o.Progress = &ingest.Progress{}
	}
	dom, err := c.L.DomainLookupByName(name)
	if err != nil {
		return nil, fmt.Errorf("domain %s: %w", name, err)
	}
	j := &job{c: c, r: r, o: o, dom: dom, name: name, uuid: uuidString(dom.UUID), res: &Result{Domain: name}}
	unlock, err := lockDomain(c.URI, j.uuid, name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := j.load(); err != nil {
		return nil, err
	}
	running, err := j.running()
	if err != nil {
		return nil, err
	}
	if running {
		if err := j.checkNoJob(); err != nil {
			return nil, err
		}
	}
	method, err := j.chooseMethod(running)
	if err != nil {
		return nil, err
	}
	j.res.Method = method
	if !o.Full {
		j.findBase(method)
	}
	switch method {
	case MethodBackup:
		err = j.pull(ctx)
	case MethodSnapshot:
		err = j.snapshot(ctx)
	case MethodOffline:
		err = j.offline(ctx)
	}
	if err != nil {
		return j.res, err
	}
	return j.res, nil
}

// load reads the domain definition and its disks.
func (j *job) load() error {
	live, err := j.c.L.DomainGetXMLDesc(j.dom, 0)
	if err != nil {
		return fmt.Errorf("domain %s: XML: %w", j.name, err)
	}
	var d libvirtxml.Domain
	if err := d.Unmarshal(live); err != nil {
		return fmt.Errorf("domain %s: XML: %w", j.name, err)
	}
	j.xml = &d
	if j.disks, err = domainDisks(&d); err != nil {
		return err
	}
	if len(j.disks) == 0 {
		return fmt.Errorf("domain %s has no disks to back up", j.name)
	}
	stored := live // the persistent definition is what restore defines again
	if inactive, err := j.c.L.DomainGetXMLDesc(j.dom, golibvirt.DomainXMLInactive); err == nil {
		stored = inactive
	}
	j.def = Definition{Name: j.name, UUID: j.uuid, URI: j.c.URI, XML: stored}
	for _, k := range j.disks {
		j.def.Disks = append(j.def.Disks, DefinitionDisk{Name: k.Target, Path: k.Path, Format: k.Format})
	}
	return nil
}

func (j *job) running() (bool, error) {
	state, _, err := j.c.L.DomainGetState(j.dom, 0)
	if err != nil {
		return false, fmt.Errorf("domain %s: state: %w", j.name, err)
	}
	switch golibvirt.DomainState(state) {
	case golibvirt.DomainShutoff, golibvirt.DomainCrashed:
		return false, nil
	}
	return true, nil
}

// checkNoJob refuses to start while another job (a backup of another
// tool, a migration) runs: libvirt allows one per domain and would block
// for 30 s before failing.
func (j *job) checkNoJob() error {
	typ, _, _, _, _, _, _, _, _, _, _, _, err := j.c.L.DomainGetJobInfo(j.dom)
	if err != nil {
		return fmt.Errorf("domain %s: job info: %w", j.name, err)
	}
	if typ != int32(golibvirt.DomainJobNone) {
		return fmt.Errorf("domain %s has a job running already (another backup or a migration); wait for it, or end it with `virsh domjobabort %s`", j.name, j.name)
	}
	return nil
}

func (j *job) chooseMethod(running bool) (string, error) {
	m := j.o.Method
	if m == "" {
		m = MethodAuto
	}
	switch m {
	case MethodAuto:
		if !running {
			return MethodOffline, nil
		}
		if j.c.backupAPI() {
			return MethodBackup, nil
		}
		j.note("libvirt on this hypervisor has no backup API: using a disk-only snapshot and blockcommit")
		return MethodSnapshot, nil
	case MethodBackup, MethodSnapshot:
		if !running {
			return "", fmt.Errorf("domain %s is shut off: method %s needs a running domain (use --method auto or offline)", j.name, m)
		}
		return m, nil
	case MethodOffline:
		if running {
			return "", fmt.Errorf("domain %s is running: method offline reads the disk files of a shut-off domain only", j.name)
		}
		return m, nil
	}
	return "", fmt.Errorf("unknown method %q: use auto, backup, snapshot or offline", m)
}

// backupAPI reports whether libvirt offers backup-begin for QEMU domains.
func (c *Conn) backupAPI() bool {
	caps, err := c.L.ConnectGetDomainCapabilities(nil, nil, nil, nil, 0)
	if err != nil {
		return false
	}
	return strings.Contains(caps, "<backup supported='yes'/>")
}

// findBase picks the restore point the next backup can continue: the
// newest restore point of this domain (same UUID) whose checkpoint still
// exists. Its bitmap has recorded every write since that point in time,
// whatever backups came after it. No such point means a full backup.
func (j *job) findBase(method string) {
	if method == MethodSnapshot {
		return // the snapshot path reads everything
	}
	pts, err := j.r.Points()
	if err != nil {
		return
	}
	var existing map[string]bool
	for i := len(pts) - 1; i >= 0; i-- {
		p := pts[i]
		if p.VM != j.name || p.Source != "libvirt" || p.Tags[TagUUID] != j.uuid || p.Tags[TagCheckpoint] == "" {
			continue
		}
		if existing == nil {
			existing = map[string]bool{}
			cps, _, err := j.c.L.DomainListAllCheckpoints(j.dom, 1, 0)
			if err != nil {
				j.note("cannot list checkpoints (%v): full backup", err)
				return
			}
			for _, c := range cps {
				existing[c.Name] = true
			}
		}
		if cp := p.Tags[TagCheckpoint]; existing[cp] {
			j.base, j.baseCP = p, cp
			return
		}
		j.note("checkpoint %s of restore point %s is gone: full backup, new checkpoint chain", p.Tags[TagCheckpoint], p.ID)
		return
	}
}

// pointOptions are the ingest options of the restore point.
func (j *job) pointOptions(checkpoint, kind string) ingest.BackupOptions {
	tags := map[string]string{TagMethod: j.res.Method, TagKind: kind, TagUUID: j.uuid}
	if checkpoint != "" {
		tags[TagCheckpoint] = checkpoint
	}
	for k, v := range j.o.Tags {
		tags[k] = v
	}
	raw, _ := marshalDefinition(j.def)
	return ingest.BackupOptions{
		VM: j.name, Tags: tags, Source: "libvirt", Consistency: j.res.Consistency,
		Definition: raw, Workers: j.o.Workers, Progress: j.o.Progress,
	}
}

func newName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

func uuidString(u golibvirt.UUID) string {
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
