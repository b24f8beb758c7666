package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/libvirt"
	"github.com/cairn-backup/cairn/repo"
)

func restoreLibvirtCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "libvirt",
		Usage:     "restore a libvirt domain: write its disks and define it again",
		ArgsUsage: "RESTORE-POINT",
		Description: "Writes every disk of the restore point as an image file and defines the domain from\n" +
			"its captured XML with the disk paths rewritten. Under a new --name the domain gets a new\n" +
			"UUID and new MAC addresses, so it can run beside the original. The disks are written on\n" +
			"this machine: run it on the hypervisor (or use a --pool-dir it shares).\n\n" +
			"Example: cairn restore libvirt 3f2a91c0 --connect qemu:///system --name web1-copy \\\n" +
			"           --pool-dir /var/lib/libvirt/images --start",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "connect", Aliases: []string{"c"}, Value: "qemu:///system", EnvVars: []string{"LIBVIRT_DEFAULT_URI"}, Usage: "libvirt `URI`"},
			&ucli.StringFlag{Name: "name", Usage: "domain `NAME` (default: the backed-up name, which must be free)"},
			&ucli.StringFlag{Name: "pool-dir", Usage: "`DIR` for the disk images (default: beside the original disks)"},
			&ucli.StringFlag{Name: "format", Value: "qcow2", Usage: "disk image format: qcow2 or raw"},
			&ucli.BoolFlag{Name: "start", Usage: "start the domain once defined"},
		},
		Action: runRestoreLibvirt,
	}
}

func runRestoreLibvirt(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErr("restore libvirt needs one RESTORE-POINT (see `cairn list`)")
	}
	conn, err := libvirt.Connect(c.String("connect"))
	if err != nil {
		return err
	}
	defer conn.Close()
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		p, err := r.LoadPoint(c.Args().Get(0))
		if err != nil {
			return err
		}
		prog := &ingest.Progress{}
		stop := showProgress(c, "restore", prog)
		res, err := conn.Restore(c.Context, r, p, libvirt.RestoreOptions{
			Name: c.String("name"), PoolDir: c.String("pool-dir"), Format: c.String("format"),
			Start: c.Bool("start"), Progress: prog,
		})
		stop()
		if err != nil {
			return fmt.Errorf("restore of %s failed: %w", p.ID, err)
		}
		if c.Bool("json") {
			return printJSON(c, res)
		}
		fmt.Fprintf(c.App.Writer, "restored %s as domain %s (uuid %s)\n", p.ID[:8], res.Domain, res.UUID)
		for _, d := range res.Disks {
			fmt.Fprintf(c.App.Writer, "  %s  %s  %s\n", d.Target, d.Format, bytesIEC(d.Size))
		}
		if res.Started {
			fmt.Fprintf(c.App.Writer, "  started\n")
		}
		return nil
	})
}
