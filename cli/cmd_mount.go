package cli

import (
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	"github.com/cairn-backup/cairn/fs"
	"github.com/cairn-backup/cairn/repo"
)

func mountCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "mount",
		Usage:     "browse restore points as read-only disk images and guest files (FUSE)",
		ArgsUsage: "MOUNTPOINT",
		Description: "Mounts the repository read-only on MOUNTPOINT: a directory per VM, a directory per\n" +
			"restore point (named by its UTC time) holding vm.json, <disk>.raw per disk, and in\n" +
			"<disk>/: p<N>.raw per partition and p<N>/ with the files of its file system, fs/\n" +
			"for a file system on a disk without partition table, lvm/<vg>/<lv>.raw and\n" +
			"lvm/<vg>/<lv>/ for LVM logical volumes; and a `latest` symlink. ext2/3/4, XFS,\n" +
			"NTFS and FAT are read by cairn itself. Backups finishing while mounted show up within\n" +
			"seconds. Runs in the foreground until Ctrl-C, SIGTERM or `cairn umount MOUNTPOINT`,\n" +
			"then unmounts.\n\n" +
			"Examples: cairn mount /mnt/cairn & qemu-img info /mnt/cairn/web1/latest/vda.raw\n" +
			"          cp -a /mnt/cairn/web1/latest/vda/p2/etc/nginx /tmp/",
		Flags: []ucli.Flag{
			&ucli.BoolFlag{Name: "allow-other", Usage: "let other users read the mount (e.g. qemu running as another user); they can then read every backed-up disk"},
			&ucli.StringFlag{Name: "cache-size", Value: "256MiB", Usage: "memory for decoded blocks (`SIZE`, e.g. 256MiB, 1GiB)"},
			&ucli.BoolFlag{Name: "foreground", Value: true, Usage: "stay in the foreground (the only mode)"},
			&ucli.BoolFlag{Name: "debug-fuse", Hidden: true, Usage: "log every FUSE request"},
		},
		Action: runMount,
	}
}

func umountCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "umount",
		Aliases:   []string{"unmount"},
		Usage:     "unmount a `cairn mount`",
		ArgsUsage: "MOUNTPOINT",
		Description: "Unmounts MOUNTPOINT (with fusermount3 -u, or umount(2) when that is missing);\n" +
			"the `cairn mount` serving it then exits. Fails while files in it are open.",
		Action: runUmount,
	}
}

func runMount(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErr("mount needs one MOUNTPOINT (an existing directory)")
	}
	if !c.Bool("foreground") {
		return usageErr("cairn mount only runs in the foreground; run it under systemd, or with & in a shell")
	}
	cache, err := parseSize(c.String("cache-size"))
	if err != nil || cache < 16<<20 {
		return usageErr("--cache-size %q: want a size of at least 16MiB, like 256MiB or 1GiB", c.String("cache-size"))
	}
	mp := c.Args().First()
	if st, err := os.Stat(mp); err != nil || !st.IsDir() {
		return usageErr("mount point %s must be an existing directory", mp)
	}
	// Caught here, not only by Main's context: a second signal while
	// unmounting must stop a lazy unmount's wait.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		logger := log.New(c.App.ErrWriter, "cairn mount: ", log.LstdFlags)
		warmHeap()
		r.WarmDecodeBuffers(decodeWarm)
		srv, err := fs.Mount(mp, r, fs.Options{
			AllowOther: c.Bool("allow-other"), CacheBytes: cache, Logger: logger, Debug: c.Bool("debug-fuse"),
		})
		if err != nil {
			return err
		}
		if c.Bool("json") {
			printJSON(c, map[string]any{"mountpoint": srv.Mountpoint(), "repository": r.Dir(), "pid": os.Getpid()})
		} else if !c.Bool("quiet") {
			fmt.Fprintf(c.App.ErrWriter, "cairn: repository %s mounted on %s (read-only); stop with Ctrl-C or `cairn umount %s`\n",
				r.Dir(), srv.Mountpoint(), srv.Mountpoint())
		}
		select {
		case <-srv.Done(): // unmounted from outside
			return nil
		case <-sigs:
		case <-c.Context.Done():
		}
		err = srv.Unmount()
		if err == nil {
			return nil
		}
		logger.Printf("unmount %s: %v", srv.Mountpoint(), strings.TrimSpace(err.Error()))
		// Busy: detach it now; open files keep working until closed.
		logger.Printf("%s is busy; detached it, still serving open files until they are closed (signal again to stop at once)", srv.Mountpoint())
		if err := lazyUnmount(srv.Mountpoint()); err != nil {
			return fmt.Errorf("unmount %s: %w", srv.Mountpoint(), err)
		}
		select {
		case <-srv.Done():
			return nil
		case <-sigs:
			return fmt.Errorf("stopped while %s was still in use; its open files now fail with ENOTCONN", srv.Mountpoint())
		}
	})
}

func runUmount(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErr("umount needs one MOUNTPOINT")
	}
	mp, err := filepath.Abs(c.Args().First())
	if err != nil {
		return err
	}
	if bin := fusermount(); bin != "" {
		out, err := exec.CommandContext(c.Context, bin, "-u", mp).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s -u %s: %v: %s", filepath.Base(bin), mp, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	if err := unix.Unmount(mp, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	return nil
}

func lazyUnmount(mp string) error {
	if bin := fusermount(); bin != "" {
		out, err := exec.Command(bin, "-u", "-z", mp).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return unix.Unmount(mp, unix.MNT_DETACH)
}

func fusermount() string {
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// parseSize reads a byte count: a number with an optional binary (KiB,
// MiB, GiB, TiB, or K, M, G, T) or decimal (KB, MB, GB, TB) suffix.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], strings.TrimSpace(s[i:])
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("invalid size %q", s)
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q", s, unit)
	}
	n := v * mult
	if n > 1<<62 {
		return 0, errors.New("size too large")
	}
	return int64(n), nil
}
