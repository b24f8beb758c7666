package cli

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/openstack"
	"github.com/cairn-backup/cairn/repo"
)

func backupOpenstackCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "openstack",
		Usage: "back up OpenStack servers (their definition and every volume) through the cloud's APIs",
		Description: "Per server: captures the definition (flavor, volumes, ports, security groups, key pair, ...),\n" +
			"snapshots every volume at once (quiesced through Nova when the image sets hw_qemu_guest_agent\n" +
			"and os_require_quiesce, else forced Cinder snapshots), reads each snapshot (temporary volume,\n" +
			"raw upload to Glance, download streamed into the repository) and deletes every temporary.\n" +
			"Servers with an image-backed root disk are read through a Nova image snapshot.\n\n" +
			"--transfer attach reads each snapshot's temporary volume on this host instead of through Glance:\n" +
			"  - when cairn runs on a Nova server of the cloud, the volume is attached to that server through\n" +
			"    Nova and read as a local block device (/dev/disk/by-id/virtio-<volume id[:20]>, or the disk whose\n" +
			"    /sys/block/*/serial matches; CAIRN_DISK_BY_ID_DIR replaces /dev/disk/by-id); every backend works.\n" +
			"    The server is --attach-to-server ID, or found by this host's SMBIOS UUID (then cloud-init's\n" +
			"    instance id) and confirmed with the cloud. Without the flag this is chosen only when the cloud\n" +
			"    confirms that this host is an ACTIVE server of the credentials' project;\n" +
			"  - otherwise (or --attach-to-server none) through a Cinder attachment to this host whose connection\n" +
			"    info cairn reads itself: rbd (`rbd export`) or nfs (share mounted here).\n" +
			"  Temporary attachments are detached before their volumes are deleted, also on errors and SIGTERM.\n\n" +
			"Example: cairn backup openstack --repo /backup --os-cloud prod --tag backup-daily --all-projects",
		Flags: append(append(openstackFlags(), selectionFlags()...),
			&ucli.StringFlag{Name: "transfer", Value: "glance", Usage: "how to read snapshots: `glance` (upload/download) or attach (on this host: see above)"},
			&ucli.StringFlag{Name: "attach-to-server", Usage: "with --transfer attach: the Nova server cairn runs on: `SERVER` id, self or none (none: a Cinder host attachment; default: self when the cloud confirms it, else none)"},
			&ucli.DurationFlag{Name: "device-timeout", Value: openstack.DefaultTimeouts.Device, Usage: "with --transfer attach to a server: longest `WAIT` for the attached volume's block device to appear on this host"},
			&ucli.StringFlag{Name: "quiesce", Value: "auto", Usage: "`auto` (when the image asks), require, never"},
			&ucli.StringFlag{Name: "pre", Usage: "shell `COMMAND` run before the snapshot (env CAIRN_SERVER_ID, CAIRN_SERVER_NAME)"},
			&ucli.StringFlag{Name: "post", Usage: "shell `COMMAND` run after the snapshot, also when it failed"},
			&ucli.IntFlag{Name: "parallel", Value: openstack.DefaultLimits.Servers, Usage: "`N` servers at once"},
			&ucli.IntFlag{Name: "max-snapshots-per-project", Value: openstack.DefaultLimits.SnapshotsPerProject, Usage: "`N` temporary snapshots per project at once"},
			&ucli.IntFlag{Name: "max-snapshots", Value: openstack.DefaultLimits.Snapshots, Usage: "`N` temporary snapshots in all at once"},
			&ucli.IntFlag{Name: "max-transfers", Value: openstack.DefaultLimits.Transfers, Usage: "`N` snapshot transfers (clone, upload, download) at once"},
			&ucli.DurationFlag{Name: "status-timeout", Value: openstack.DefaultTimeouts.Upload, Usage: "longest wait for a snapshot, volume or image `DURATION`"},
			&ucli.StringFlag{Name: "journal-dir", EnvVars: []string{"CAIRN_JOURNAL_DIR"}, Usage: "`DIR` of the run journals (default ~/.local/state/cairn/openstack)"},
			&ucli.StringSliceFlag{Name: "point-tag", Usage: "`KEY=VALUE` tag for every restore point (repeatable)"},
		),
		Action: runBackupOpenstack,
	}
}

func runBackupOpenstack(c *ucli.Context) error {
	procForBlockingIO()
	sel, err := osSelection(c)
	if err != nil {
		return err
	}
	if len(sel.Servers) == 0 && len(sel.Tags) == 0 && len(sel.Metadata) == 0 && sel.NamePattern == "" && sel.Project == "" && !sel.AllProjects {
		return usageErr("select servers: --server, --tag, --metadata, --name-pattern, --project or --all-projects")
	}
	tags, err := parsePairs(c.StringSlice("point-tag"), "--point-tag")
	if err != nil {
		return err
	}
	o := openstack.BackupOptions{
		Transfer: c.String("transfer"), AttachTo: c.String("attach-to-server"), Quiesce: c.String("quiesce"), Pre: c.String("pre"), Post: c.String("post"),
		JournalDir: c.String("journal-dir"), Tags: map[string]string{},
		Limits: openstack.Limits{Servers: c.Int("parallel"), SnapshotsPerProject: c.Int("max-snapshots-per-project"),
			Snapshots: c.Int("max-snapshots"), Transfers: c.Int("max-transfers")},
	}
	if d := c.Duration("status-timeout"); d > 0 {
		o.Timeouts = openstack.Timeouts{Snapshot: d, Volume: d, Upload: d, Delete: d}
	}
	o.Timeouts.Device = c.Duration("device-timeout")
	for _, t := range tags {
		o.Tags[t[0]] = t[1]
	}
	cl, err := osConnect(c)
	if err != nil {
		return err
	}
	servers, err := cl.ListServers(c.Context, sel)
	if err != nil {
		return err
	}
	if len(servers) == 0 {
		return fmt.Errorf("no server matches the selection")
	}
	pr := newOSProgress(c)
	o.Events, o.Progress = pr.event, pr.progress
	var results []openstack.ServerResult
	err = withRepo(c, repo.Shared, func(r *repo.Repository) error {
		stop := pr.start()
		var berr error
		results, berr = cl.Backup(c.Context, r, servers, o)
		stop()
		return berr
	})
	if c.Bool("json") {
		if perr := printJSON(c, map[string]any{"servers": results, "ok": err == nil}); perr != nil {
			return perr
		}
	} else {
		printOpenstackResults(c, results)
	}
	if errors.Is(err, openstack.ErrSomeFailed) {
		return fmt.Errorf("%w (restore points of the others were saved)", err)
	}
	return err
}

func printOpenstackResults(c *ucli.Context, results []openstack.ServerResult) {
	w := c.App.Writer
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(w, "FAILED %s (%s): %s\n", r.Server, r.ServerID, r.Error)
		} else {
			s := r.Summary
			fmt.Fprintf(w, "saved %s (%s): restore point %s, %s consistency via %s; %s logical, %s new, %s stored, %s\n",
				r.Server, r.ServerID, r.PointID, r.Consistency, r.Method, bytesIEC(s.LogicalSize), bytesIEC(s.NewBytes),
				bytesIEC(s.StoredBytes), s.Duration.Round(time.Millisecond))
		}
		for _, wn := range r.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", wn)
		}
	}
}

// osProgress prints backup events as lines and, periodically, the ingest
// progress of each server being read.
type osProgress struct {
	c     *ucli.Context
	mu    sync.Mutex
	per   map[string]*ingest.Progress
	order []string
}

func newOSProgress(c *ucli.Context) *osProgress {
	return &osProgress{c: c, per: map[string]*ingest.Progress{}}
}

func (p *osProgress) event(ev openstack.Event) {
	if p.c.Bool("quiet") {
		return
	}
	who := ev.Server
	if who == "" {
		who = "cairn"
	}
	msg := ev.Message
	if msg == "" {
		msg = "started"
	}
	fmt.Fprintf(p.c.App.ErrWriter, "%s [%s] %s: %s\n", ev.Time.Format("15:04:05"), who, ev.Step, msg)
}

func (p *osProgress) progress(s *openstack.Server) *ingest.Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := &ingest.Progress{}
	p.per[s.Name] = pr
	p.order = append(p.order, s.Name)
	return pr
}

func (p *osProgress) start() (stop func()) {
	if p.c.Bool("quiet") {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.mu.Lock()
				var lines []string
				for _, n := range p.order {
					s := p.per[n].Snapshot()
					if s.Total > 0 && s.Done < s.Total {
						lines = append(lines, progressLine("["+n+"]", s))
					}
				}
				p.mu.Unlock()
				if len(lines) > 0 {
					fmt.Fprintln(p.c.App.ErrWriter, strings.Join(lines, "\n"))
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}
