package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

func restoreCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "restore",
		Usage: "restore from a restore point",
		Subcommands: []*ucli.Command{{
			Name:      "disk",
			Usage:     "write one disk of a restore point to a raw or qcow2 image (or a block device)",
			ArgsUsage: "RESTORE-POINT DISK",
			Description: "Writes the disk byte-exact and sparse. The output format follows --format, or the\n" +
				"target's extension (.qcow2 gives qcow2, anything else raw).\n\n" +
				"Example: cairn restore disk 3f2a91c0 vda --to /var/tmp/web1-vda.qcow2",
			Flags: []ucli.Flag{
				&ucli.StringFlag{Name: "to", Required: true, Usage: "target `PATH`: a new file or a block device"},
				&ucli.StringFlag{Name: "format", Usage: "raw or qcow2 (default: by extension)"},
				&ucli.BoolFlag{Name: "overwrite", Usage: "replace an existing file"},
			},
			Action: runRestoreDisk,
		}, restoreFilesCommand(), restoreLibvirtCommand(), restoreVMCommand(), restoreVolumeCommand()},
	}
}

func runRestoreDisk(c *ucli.Context) error {
	procForBlockingIO()
	if c.NArg() != 2 {
		return usageErr("restore disk needs RESTORE-POINT and DISK (see `cairn list` and `cairn show`)")
	}
	switch f := c.String("format"); f {
	case "", "raw", "qcow2":
	default:
		return usageErr("--format %q: use raw or qcow2", f)
	}
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		p, err := r.LoadPoint(c.Args().Get(0))
		if err != nil {
			return err
		}
		prog := &ingest.Progress{}
		stop := showProgress(c, "restore", prog)
		sum, err := ingest.RestoreDisk(c.Context, r, p, c.Args().Get(1), c.String("to"), ingest.RestoreOptions{
			Format: c.String("format"), Overwrite: c.Bool("overwrite"), Progress: prog,
		})
		stop()
		if err != nil {
			return fmt.Errorf("restore of %s disk %s failed, nothing was written to %s: %w", p.ID, c.Args().Get(1), c.String("to"), err)
		}
		if c.Bool("json") {
			return printJSON(c, map[string]any{
				"id": p.ID, "vm": p.VM, "disk": c.Args().Get(1), "target": sum.Target, "format": sum.Format,
				"size": sum.Size, "bytes_written": sum.Written, "duration_seconds": sum.Duration.Seconds(),
			})
		}
		fmt.Fprintf(c.App.Writer, "restored %s disk %s (%s) to %s as %s in %s (%s)\n", p.ID[:8], c.Args().Get(1),
			bytesIEC(sum.Size), sum.Target, sum.Format, sum.Duration.Round(1e6), rateMB(float64(sum.Size)/max(sum.Duration.Seconds(), 1e-3)))
		return nil
	})
}
