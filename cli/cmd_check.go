package cli

import (
	"fmt"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/repo"
)

func checkCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "check",
		Usage: "verify the repository's structure, and optionally its data",
		Description: "Without flags: every restore point and block table decodes and verifies, and every\n" +
			"referenced block is in the pack the restore point names. --read-data also re-reads and\n" +
			"re-hashes stored blocks (--subset 10% reads a random tenth of the packs).\n" +
			"Exits 3 when it finds damage.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "read-data", Usage: "read and verify stored blocks"},
			&ucli.StringFlag{Name: "subset", Usage: "with --read-data: `N%` of the packs, chosen at random"},
		},
		Action: runCheck,
	}
}

func runCheck(c *ucli.Context) error {
	o := repo.CheckOptions{ReadData: c.Bool("read-data")}
	if s := c.String("subset"); s != "" {
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || v <= 0 || v > 100 {
			return usageErr("--subset %q: want a percentage like 10%%", s)
		}
		o.SubsetPercent = v
		o.ReadData = true
	}
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		rep, err := r.Check(o)
		if err != nil {
			return err
		}
		if c.Bool("json") {
			if err := printJSON(c, rep); err != nil {
				return err
			}
		} else {
			w := c.App.Writer
			fmt.Fprintf(w, "checked %d restore points, %d packs, %d block references", rep.Points, rep.Packs, rep.Blobs)
			if o.ReadData {
				fmt.Fprintf(w, "; read %d packs (%s)", rep.PacksRead, bytesIEC(rep.BytesRead))
			}
			fmt.Fprintln(w)
			for _, m := range rep.Warnings {
				fmt.Fprintln(w, "warning:", m)
			}
			for _, m := range rep.Errors {
				fmt.Fprintln(w, "error:", m)
			}
			if rep.OK() {
				fmt.Fprintln(w, "no errors found")
			}
		}
		if !rep.OK() {
			return fmt.Errorf("%w: %d problem(s); restore points named above may not restore", errCheckFailed, len(rep.Errors))
		}
		return nil
	})
}
