package cli

import (
	"fmt"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/repo"
)

func pruneCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "prune",
		Usage: "free the space of blocks no restore point uses",
		Description: "Deletes unused packs and repacks partly used ones. Takes the exclusive lock: backups,\n" +
			"mounts and restores wait or fail while it runs.",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only print what would be freed"},
			&ucli.Float64Flag{Name: "max-unused", Value: 10, Usage: "repack packs with more than `PERCENT` unused bytes"},
		},
		Action: runPrune,
	}
}

func runPrune(c *ucli.Context) error {
	return withRepo(c, repo.Exclusive, func(r *repo.Repository) error {
		rep, err := r.Prune(repo.PruneOptions{DryRun: c.Bool("dry-run"), MaxUnusedPercent: c.Float64("max-unused")})
		if err != nil {
			return err
		}
		if c.Bool("json") {
			return printJSON(c, rep)
		}
		verb := "freed"
		if rep.DryRun {
			verb = "would free"
		}
		fmt.Fprintf(c.App.Writer, "%d restore points, %d packs (%s): %d deleted, %d repacked (%d blocks moved, %d points rewritten); %s %s\n",
			rep.Points, rep.Packs, bytesIEC(rep.BytesBefore), rep.PacksDeleted, rep.PacksRepacked, rep.BlobsMoved, rep.PointsRewritten, verb, bytesIEC(rep.BytesFreed))
		return nil
	})
}

func repairCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "repair",
		Usage: "repair repository structures",
		Subcommands: []*ucli.Command{{
			Name:  "index",
			Usage: "rebuild the index from the packs alone",
			Action: func(c *ucli.Context) error {
				return withRepo(c, repo.Exclusive, func(r *repo.Repository) error {
					rep, err := r.RepairIndex()
					if err != nil {
						return err
					}
					if c.Bool("json") {
						errs := []string{}
						for _, e := range rep.Damaged {
							errs = append(errs, e.Error())
						}
						return printJSON(c, map[string]any{"packs_indexed": rep.Added, "damaged_packs": errs})
					}
					fmt.Fprintf(c.App.Writer, "index rebuilt from %d packs\n", rep.Added)
					for _, e := range rep.Damaged {
						fmt.Fprintln(c.App.Writer, "damaged:", e)
					}
					return nil
				})
			},
		}},
	}
}
