package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/repo"
)

func forgetCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "forget",
		Usage: "delete restore points that a retention policy does not keep",
		Description: "Applies the policy per VM. Deleted restore points' space is freed by `cairn prune`\n" +
			"(or pass --prune). Example: cairn forget --keep-daily 7 --keep-weekly 4 --keep-monthly 12",
		Flags: []ucli.Flag{
			&ucli.IntFlag{Name: "keep-last", Usage: "keep the `N` newest restore points"},
			&ucli.IntFlag{Name: "keep-hourly", Usage: "keep the newest point of each of the last `N` hours with points"},
			&ucli.IntFlag{Name: "keep-daily", Usage: "... of each of the last `N` days"},
			&ucli.IntFlag{Name: "keep-weekly", Usage: "... of each of the last `N` ISO weeks"},
			&ucli.IntFlag{Name: "keep-monthly", Usage: "... of each of the last `N` months"},
			&ucli.IntFlag{Name: "keep-yearly", Usage: "... of each of the last `N` years"},
			&ucli.DurationFlag{Name: "keep-within", Usage: "keep everything newer than `DURATION` before the newest point"},
			&ucli.StringSliceFlag{Name: "keep-tag", Usage: "keep points with this `KEY=VALUE` tag"},
			&ucli.StringSliceFlag{Name: "vm", Usage: "only this `VM` (repeatable)"},
			&ucli.BoolFlag{Name: "dry-run", Aliases: []string{"n"}, Usage: "only print what would be deleted"},
			&ucli.BoolFlag{Name: "prune", Usage: "run prune afterwards"},
		},
		Action: runForget,
	}
}

func runForget(c *ucli.Context) error {
	pol := repo.RetentionPolicy{
		Last: c.Int("keep-last"), Hourly: c.Int("keep-hourly"), Daily: c.Int("keep-daily"),
		Weekly: c.Int("keep-weekly"), Monthly: c.Int("keep-monthly"), Yearly: c.Int("keep-yearly"),
		Within: c.Duration("keep-within"), Tags: c.StringSlice("keep-tag"),
	}
	if err := pol.Validate(); err != nil {
		return usageErr("%v", err)
	}
	var decisions []repo.RetentionDecision
	err := withRepo(c, repo.Shared, func(r *repo.Repository) (err error) {
		decisions, err = r.Forget(pol, c.StringSlice("vm"), c.Bool("dry-run"))
		return err
	})
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := printJSON(c, decisions); err != nil {
			return err
		}
	} else {
		tw := table(c.App.Writer)
		fmt.Fprintln(tw, "VM\tID\tTIME\tACTION\tREASONS")
		removed := 0
		for _, d := range decisions {
			action := "keep"
			if !d.Keep {
				action, removed = "remove", removed+1
				if c.Bool("dry-run") {
					action = "would remove"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Point.VM, d.Point.ID[:8], d.Point.Time.Local().Format("2006-01-02 15:04:05"), action, strings.Join(d.Reasons, ", "))
		}
		tw.Flush()
		fmt.Fprintf(c.App.Writer, "%d restore point(s) removed, %d kept\n", removed, len(decisions)-removed)
	}
	if c.Bool("prune") && !c.Bool("dry-run") {
		return runPrune(c)
	}
	return nil
}
