package cli

import (
	"fmt"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/repo"
)

func listCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "list",
		Usage: "list restore points, grouped by VM",
		Flags: []ucli.Flag{
			&ucli.StringSliceFlag{Name: "vm", Usage: "only this `VM` (repeatable)"},
		},
		Action: runList,
	}
}

type pointSummary struct {
	ID          string            `json:"id"`
	VM          string            `json:"vm"`
	Time        time.Time         `json:"time"`
	Disks       []string          `json:"disks"`
	Size        int64             `json:"logical_size"`
	NewBytes    int64             `json:"new_bytes"`
	Stored      int64             `json:"stored_bytes"`
	Tags        map[string]string `json:"tags,omitempty"`
	Consistency string            `json:"consistency,omitempty"`
	Source      string            `json:"source,omitempty"`
}

func summarize(p *repo.RestorePoint) pointSummary {
	s := pointSummary{ID: p.ID, VM: p.VM, Time: p.Time, Tags: p.Tags, Consistency: p.Consistency, Source: p.Source}
	for _, d := range p.Disks {
		s.Disks = append(s.Disks, d.Name)
		s.Size += d.Size
		s.NewBytes += d.Stats.NewBytes
		s.Stored += d.Stats.StoredBytes
	}
	return s
}

func runList(c *ucli.Context) error {
	r, err := openRepo(c)
	if err != nil {
		return err
	}
	defer r.Close()
	points, err := r.Points()
	if err != nil {
		return err
	}
	want := make(map[string]bool)
	for _, vm := range c.StringSlice("vm") {
		want[vm] = true
	}
	out := []pointSummary{}
	for _, p := range points {
		if len(want) == 0 || want[p.VM] {
			out = append(out, summarize(p))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].VM < out[j].VM })
	if c.Bool("json") {
		return printJSON(c, out)
	}
	if len(out) == 0 {
		fmt.Fprintln(c.App.Writer, "no restore points")
		return nil
	}
	tw := table(c.App.Writer)
	fmt.Fprintln(tw, "VM\tID\tTIME\tDISKS\tSIZE\tNEW\tSTORED\tTAGS")
	for _, s := range out {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.VM, s.ID[:8], s.Time.Local().Format("2006-01-02 15:04:05"),
			strings.Join(s.Disks, ","), bytesIEC(s.Size), bytesIEC(s.NewBytes), bytesIEC(s.Stored), formatTags(s.Tags))
	}
	return tw.Flush()
}

func formatTags(t map[string]string) string {
	var parts []string
	for k, v := range t {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func showCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "show",
		Usage:     "show a restore point: its disks and metadata",
		ArgsUsage: "RESTORE-POINT",
		Action:    runShow,
	}
}

func runShow(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErr("show needs one restore point ID (see `cairn list`)")
	}
	r, err := openRepo(c)
	if err != nil {
		return err
	}
	defer r.Close()
	p, err := r.LoadPoint(c.Args().First())
	if err != nil {
		return err
	}
	if c.Bool("json") {
		type diskOut struct {
			Name      string         `json:"name"`
			Size      int64          `json:"size"`
			BlockSize int            `json:"block_size"`
			Format    string         `json:"source_format"`
			Source    string         `json:"source"`
			Tables    int            `json:"tables"`
			Stats     repo.DiskStats `json:"stats"`
		}
		out := struct {
			pointSummary
			Parent     string    `json:"parent,omitempty"`
			Host       string    `json:"host,omitempty"`
			Definition any       `json:"definition,omitempty"`
			DiskInfo   []diskOut `json:"disk_details"`
		}{pointSummary: summarize(p), Parent: p.Parent, Host: p.Host}
		if len(p.Definition) > 0 {
			out.Definition = p.Definition
		}
		for _, d := range p.Disks {
			out.DiskInfo = append(out.DiskInfo, diskOut{d.Name, d.Size, d.BlockSize, d.Format, d.Source, len(d.Tables), d.Stats})
		}
		return printJSON(c, out)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "restore point %s\n  vm           %s\n  time         %s\n  host         %s\n  source       %s\n  consistency  %s\n",
		p.ID, p.VM, p.Time.Local().Format(time.RFC3339), p.Host, p.Source, p.Consistency)
	if p.Parent != "" {
		fmt.Fprintf(w, "  parent       %s\n", p.Parent)
	}
	if len(p.Tags) > 0 {
		fmt.Fprintf(w, "  tags         %s\n", formatTags(p.Tags))
	}
	tw := table(w)
	fmt.Fprintln(tw, "\nDISK\tSIZE\tDATA\tNEW\tSTORED\tFORMAT\tSOURCE")
	for _, d := range p.Disks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Name, bytesIEC(d.Size), bytesIEC(d.Stats.DataBlocks*int64(d.BlockSize)),
			bytesIEC(d.Stats.NewBytes), bytesIEC(d.Stats.StoredBytes), d.Format, d.Source)
	}
	return tw.Flush()
}
