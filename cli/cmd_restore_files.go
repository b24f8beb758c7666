package cli

import (
	"fmt"
	"io"
	"log"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/fs/tree"
	"github.com/cairn-backup/cairn/repo"
)

func restoreFilesCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "files",
		Usage:     "copy files out of a guest file system of a restore point, without mounting",
		ArgsUsage: "RESTORE-POINT VOLUME:PATH",
		Description: "Copies a file or a directory tree from inside a backed-up disk into --to, the way\n" +
			"`cp -a` would from `cairn mount`: modes, times, symlinks, hard links and sparse\n" +
			"files are kept, and owners when run as root. VOLUME is a disk with a file system\n" +
			"directly on it (vda), a partition (vda/p2) or an LVM logical volume\n" +
			"(vda/lvm/VG/LV); `cairn mount` shows the same names. Files that cannot be read\n" +
			"are reported and skipped; the rest is copied, and the exit code is then 1.\n\n" +
			"Examples:\n" +
			"  cairn restore files 3f2a91c0 vda/p2:/etc/nginx --to ./out     (gives ./out/nginx)\n" +
			"  cairn restore files 3f2a91c0 vda/lvm/vg0/root:/ --to /srv/web1-root",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "to", Required: true, Usage: "directory to copy into (`DIR`, created if missing); nothing in it is overwritten"},
			&ucli.BoolFlag{Name: "no-owners", Usage: "do not set the guest's owners (they are set when running as root)"},
		},
		Action: runRestoreFiles,
	}
}

// maxReportedErrors bounds the errors listed in --json output.
const maxReportedErrors = 1000

func runRestoreFiles(c *ucli.Context) error {
	if c.NArg() != 2 {
		return usageErr("restore files needs RESTORE-POINT and VOLUME:PATH, like 3f2a91c0 vda/p2:/etc/nginx")
	}
	spec := c.Args().Get(1)
	if !strings.Contains(spec, ":") {
		return usageErr("%q: want VOLUME:PATH, like vda/p2:/etc/nginx, vda:/home or vda/lvm/vg0/root:/var", spec)
	}
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		p, err := r.LoadPoint(c.Args().Get(0))
		if err != nil {
			return err
		}
		// Every problem reaches onError, with where it happened: the
		// tree's own log would repeat them.
		t := tree.New(r, tree.Options{Logger: log.New(io.Discard, "", 0)})
		defer t.Close()
		n, err := t.ResolveGuest(p, spec)
		if err != nil {
			return err
		}
		_, inner, _ := strings.Cut(spec, ":")
		name := path.Base(path.Clean("/" + inner))
		var (
			mu     sync.Mutex
			errs   []map[string]string
			nerrs  int
			prog   tree.CopyProgress
			stderr = c.App.ErrWriter
		)
		onError := func(p string, err error) {
			mu.Lock()
			defer mu.Unlock()
			nerrs++
			fmt.Fprintf(stderr, "cairn: %s: %v\n", p, err)
			if len(errs) < maxReportedErrors {
				errs = append(errs, map[string]string{"path": p, "error": err.Error()})
			}
		}
		stop := showCopyProgress(c, &prog)
		start := time.Now()
		sum, err := tree.CopyOut(c.Context, n, name, c.String("to"), tree.CopyOptions{
			Owners: os.Geteuid() == 0 && !c.Bool("no-owners"), Progress: &prog, OnError: onError,
		})
		stop()
		el := time.Since(start)
		if err != nil {
			return fmt.Errorf("copying %s of %s to %s: %w", spec, p.ID[:8], c.String("to"), err)
		}
		if c.Bool("json") {
			if errs == nil {
				errs = []map[string]string{}
			}
			printJSON(c, map[string]any{
				"id": p.ID, "vm": p.VM, "source": spec, "target": c.String("to"),
				"files": sum.Files, "dirs": sum.Dirs, "symlinks": sum.Symlinks, "hard_links": sum.HardLinks,
				"specials": sum.Specials, "bytes": sum.Bytes, "errors": sum.Errors, "error_list": errs,
				"duration_seconds": el.Seconds(),
			})
		} else {
			fmt.Fprintf(c.App.Writer, "copied %s of %s to %s: %d files (%s), %d directories, %d symlinks, %d errors, in %s (%s)\n",
				spec, p.ID[:8], c.String("to"), sum.Files, bytesIEC(sum.Bytes), sum.Dirs, sum.Symlinks, sum.Errors,
				el.Round(time.Millisecond), rateMB(float64(sum.Bytes)/max(el.Seconds(), 1e-3)))
		}
		if sum.Errors > 0 {
			return fmt.Errorf("%d files or directories could not be copied (listed above); the rest was", sum.Errors)
		}
		return nil
	})
}

// showCopyProgress prints what has been copied so far, like showProgress.
func showCopyProgress(c *ucli.Context, p *tree.CopyProgress) (stop func()) {
	start := time.Now()
	return showStatus(c, func() string {
		b := p.Bytes.Load()
		return fmt.Sprintf("restore files: %d files, %s, %s, %d errors", p.Files.Load(), bytesIEC(b),
			rateMB(float64(b)/max(time.Since(start).Seconds(), 1e-3)), p.Errors.Load())
	})
}
