package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

func backupCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "backup",
		Usage:     "back up the disk images of a VM into one restore point",
		ArgsUsage: " ",
		Description: "Reads each disk image (raw file, block device or qcow2, with backing files),\n" +
			"stores the blocks the repository lacks and commits one restore point.\n\n" +
			"Example: cairn backup --vm web1 --disk vda=/var/lib/libvirt/images/web1.qcow2 --tag env=prod",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "vm", Usage: "VM `NAME` the restore point belongs to (required)"},
			&ucli.StringSliceFlag{Name: "disk", Usage: "`NAME=PATH` of a disk image (repeat per disk; required)"},
			&ucli.StringSliceFlag{Name: "tag", Usage: "`KEY=VALUE` tag for the restore point (repeatable)"},
		},
		Action:      runBackup,
		Subcommands: []*ucli.Command{backupOpenstackCommand(), backupLibvirtCommand()},
	}
}

func parsePairs(vals []string, what string) ([][2]string, error) {
	var out [][2]string
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || val == "" {
			return nil, usageErr("%s %q: want NAME=VALUE", what, v)
		}
		out = append(out, [2]string{k, val})
	}
	return out, nil
}

func runBackup(c *ucli.Context) error {
	procForBlockingIO()
	if c.String("vm") == "" || len(c.StringSlice("disk")) == 0 {
		return usageErr("backup needs --vm NAME and at least one --disk NAME=PATH (or a subcommand: backup openstack, backup libvirt)")
	}
	disks, err := parsePairs(c.StringSlice("disk"), "--disk")
	if err != nil {
		return err
	}
	tags, err := parsePairs(c.StringSlice("tag"), "--tag")
	if err != nil {
		return err
	}
	o := ingest.BackupOptions{VM: c.String("vm"), Progress: &ingest.Progress{}}
	for _, d := range disks {
		o.Disks = append(o.Disks, ingest.DiskSpec{Name: d[0], Path: d[1]})
	}
	if len(tags) > 0 {
		o.Tags = make(map[string]string)
		for _, t := range tags {
			o.Tags[t[0]] = t[1]
		}
	}
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		stop := showProgress(c, "backup", o.Progress)
		_, sum, err := ingest.Backup(c.Context, r, o)
		stop()
		if err != nil {
			return fmt.Errorf("backup of %s failed, no restore point was written: %w", o.VM, err)
		}
		return printBackupSummary(c, sum)
	})
}

func printBackupSummary(c *ucli.Context, s ingest.Summary) error {
	if c.Bool("json") {
		return printJSON(c, map[string]any{
			"id": s.PointID, "vm": s.VM, "parent": s.Parent,
			"logical_size": s.LogicalSize, "bytes_read": s.BytesRead, "data_bytes": s.DataBytes,
			"new_bytes": s.NewBytes, "stored_bytes": s.StoredBytes,
			"dedup_ratio": s.DedupRatio(), "compression_ratio": s.CompressionRatio(),
			"duration_seconds": s.Duration.Seconds(), "throughput_bytes_per_second": s.Throughput(),
		})
	}
	w := c.App.Writer
	fmt.Fprintf(w, "restore point %s of %s saved\n", s.PointID, s.VM)
	dedup, comp := "all data was already stored", ""
	if s.NewBytes > 0 {
		dedup = fmt.Sprintf("dedup %.2fx", s.DedupRatio())
		comp = fmt.Sprintf(" (compression %.2fx)", s.CompressionRatio())
	}
	fmt.Fprintf(w, "  logical size  %s\n  read          %s\n  data          %s\n  new           %s (%s)\n  stored        %s%s\n  took          %s (%s)\n",
		bytesIEC(s.LogicalSize), bytesIEC(s.BytesRead), bytesIEC(s.DataBytes),
		bytesIEC(s.NewBytes), dedup, bytesIEC(s.StoredBytes), comp,
		s.Duration.Round(1e6), rateMB(s.Throughput()))
	return nil
}
