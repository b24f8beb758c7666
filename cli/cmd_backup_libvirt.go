package cli

import (
	"errors"
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/libvirt"
	"github.com/cairn-backup/cairn/repo"
)

func backupLibvirtCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "libvirt",
		Usage:     "back up libvirt/KVM domains from their hypervisor, incrementally",
		ArgsUsage: " ",
		Description: "Reads every disk of each domain through libvirt: a running domain through the backup\n" +
			"API (NBD pull mode, only the blocks that changed since the last backup, via a checkpoint);\n" +
			"a shut-off domain from its disk files (qemu-nbd, same checkpoint bitmaps); without the\n" +
			"backup API through a disk-only snapshot and blockcommit. Every restore point is a\n" +
			"complete disk. The domain XML is stored with it.\n\n" +
			"Examples:\n" +
			"  cairn backup libvirt --connect qemu:///system --domain web1 --domain db1\n" +
			"  cairn backup libvirt --connect qemu+ssh://root@kvm3/system --all --quiesce",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "connect", Aliases: []string{"c"}, Value: "qemu:///system", EnvVars: []string{"LIBVIRT_DEFAULT_URI"},
				Usage: "libvirt `URI`: qemu:///system, or qemu+ssh://user@host/system (SSH key; ?keyfile=PATH, ?no_verify=1)"},
			&ucli.StringSliceFlag{Name: "domain", Aliases: []string{"d"}, Usage: "domain `NAME` to back up (repeatable)"},
			&ucli.BoolFlag{Name: "all", Usage: "back up every domain of the hypervisor"},
			&ucli.StringFlag{Name: "method", Value: "auto", Usage: "auto, backup (backup API), snapshot (snapshot + blockcommit) or offline (shut-off domains)"},
			&ucli.BoolFlag{Name: "full", Usage: "read everything and start a new checkpoint chain"},
			&ucli.BoolFlag{Name: "quiesce", Usage: "freeze the guest file systems through the QEMU guest agent"},
			&ucli.BoolFlag{Name: "suspend", Usage: "pause the guest while the point in time is taken (guests without an agent)"},
			&ucli.DurationFlag{Name: "max-suspend", Value: 10e9, Usage: "resume a suspended guest after at most `DURATION`"},
			&ucli.StringFlag{Name: "pre", Usage: "shell `COMMAND` to run before the point in time (CAIRN_DOMAIN is set); failing skips the domain"},
			&ucli.StringFlag{Name: "post", Usage: "shell `COMMAND` to run after the point in time"},
			&ucli.StringFlag{Name: "socket-dir", Value: "/var/tmp", Usage: "`DIR` on the hypervisor for the NBD sockets"},
			&ucli.StringSliceFlag{Name: "tag", Usage: "`KEY=VALUE` tag for the restore points (repeatable)"},
		},
		Action: runBackupLibvirt,
	}
}

func runBackupLibvirt(c *ucli.Context) error {
	procForBlockingIO()
	doms := c.StringSlice("domain")
	if (len(doms) == 0) == !c.Bool("all") {
		return usageErr("name the domains with --domain NAME (repeatable) or pass --all")
	}
	tags, err := parsePairs(c.StringSlice("tag"), "--tag")
	if err != nil {
		return err
	}
	conn, err := libvirt.Connect(c.String("connect"))
	if err != nil {
		return err
	}
	defer conn.Close()
	if c.Bool("all") {
		if doms, err = conn.Domains(); err != nil {
			return err
		}
		if len(doms) == 0 {
			return fmt.Errorf("no domains on %s", c.String("connect"))
		}
	}
	o := libvirt.Options{
		Method: c.String("method"), Full: c.Bool("full"), Quiesce: c.Bool("quiesce"),
		Suspend: c.Bool("suspend"), MaxSuspend: c.Duration("max-suspend"),
		Pre: c.String("pre"), Post: c.String("post"), SocketDir: c.String("socket-dir"),
		Tags: map[string]string{},
		Warn: func(msg string) { fmt.Fprintln(c.App.ErrWriter, "cairn: note:", msg) },
	}
	for _, t := range tags {
		o.Tags[t[0]] = t[1]
	}
	var results []*libvirt.Result
	var failed []string
	err = withRepo(c, repo.Shared, func(r *repo.Repository) error {
		for _, d := range doms {
			if c.Context.Err() != nil {
				break
			}
			o.Progress = &ingest.Progress{}
			stop := showProgress(c, "backup "+d, o.Progress)
			res, err := conn.Backup(c.Context, r, d, o)
			stop()
			if err != nil {
				fmt.Fprintf(c.App.ErrWriter, "cairn: backup of domain %s failed, no restore point was written: %v\n", d, err)
				failed = append(failed, d)
				continue
			}
			results = append(results, res)
			if !c.Bool("json") {
				fmt.Fprintf(c.App.Writer, "domain %s: %s backup via %s, %s-consistent\n", d, res.Kind, res.Method, res.Consistency)
				if err := printBackupSummary(c, res.Summary); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printJSON(c, map[string]any{"results": results, "failed": failed}); err != nil {
			return err
		}
	}
	if err := c.Context.Err(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return errors.New("backup failed for domain(s) " + strings.Join(failed, ", "))
	}
	return nil
}
