package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/ingest"
)

// showProgress prints p to stderr until the returned stop is called.
func showProgress(c *ucli.Context, verb string, p *ingest.Progress) (stop func()) {
	return showStatus(c, func() string { return progressLine(verb, p.Snapshot()) })
}

// showStatus prints line() to stderr until the returned stop is called: a
// refreshed line each second on a terminal, a plain line every 10 s
// otherwise (logs), nothing with --quiet.
func showStatus(c *ucli.Context, line func() string) (stop func()) {
	if c.Bool("quiet") {
		return func() {}
	}
	w := c.App.ErrWriter
	tty := isTerminal(w)
	every := 10 * time.Second
	if tty {
		every = time.Second
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if tty {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-t.C:
				if tty {
					fmt.Fprint(w, "\r\033[K"+line())
				} else {
					fmt.Fprintln(w, line())
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func progressLine(verb string, s ingest.Snapshot) string {
	pct := 0.0
	if s.Total > 0 {
		pct = 100 * float64(s.Done) / float64(s.Total)
	}
	rate := float64(s.Done) / max(s.Elapsed.Seconds(), 0.001)
	eta := "?"
	if rate > 0 && s.Total > s.Done {
		eta = (time.Duration(float64(s.Total-s.Done)/rate) * time.Second / time.Second).Round(time.Second).String()
	}
	return fmt.Sprintf("%s %s: %5.1f%% of %s, read %s, new %s, %s, ETA %s",
		verb, s.Disk, pct, bytesIEC(s.Total), bytesIEC(s.Read), bytesIEC(s.NewBytes), rateMB(rate), eta)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
