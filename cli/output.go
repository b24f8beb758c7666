package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"
)

// printJSON writes v as indented JSON to the app's stdout.
func printJSON(c *ucli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// bytesIEC formats a byte count for people.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// rateMB formats bytes per second as MB/s (decimal, like dd and fio).
func rateMB(bps float64) string { return fmt.Sprintf("%.0f MB/s", bps/1e6) }
