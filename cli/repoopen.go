package cli

import (
	"bytes"
	"fmt"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/repo"
)

func repoDir(c *ucli.Context) (string, error) {
	dir := c.String("repo")
	if dir == "" {
		return "", usageErr("no repository given: pass --repo DIR or set CAIRN_REPO")
	}
	return dir, nil
}

// credentials reads CAIRN_PASSWORD, --password-file and --key-file.
func credentials(c *ucli.Context) (repo.Credentials, error) {
	var cr repo.Credentials
	if pw := os.Getenv("CAIRN_PASSWORD"); pw != "" {
		cr.Password = []byte(pw)
	}
	if f := c.String("password-file"); f != "" {
		raw, err := os.ReadFile(f)
		if err != nil {
			return cr, fmt.Errorf("read password file: %w", err)
		}
		cr.Password = bytes.TrimRight(raw, "\r\n")
		if len(cr.Password) == 0 {
			return cr, fmt.Errorf("password file %s is empty", f)
		}
	}
	if f := c.String("key-file"); f != "" {
		raw, err := os.ReadFile(f)
		if err != nil {
			return cr, fmt.Errorf("read key file: %w", err)
		}
		if len(raw) < 16 {
			return cr, fmt.Errorf("key file %s holds %d bytes; use at least 16 random bytes (e.g. head -c 32 /dev/urandom > %s)", f, len(raw), f)
		}
		cr.KeyFile = raw
	}
	return cr, nil
}

// openRepo opens the repository named by the global flags.
func openRepo(c *ucli.Context) (*repo.Repository, error) {
	dir, err := repoDir(c)
	if err != nil {
		return nil, err
	}
	cr, err := credentials(c)
	if err != nil {
		return nil, err
	}
	return repo.Open(dir, cr)
}

// withRepo opens the repository, takes the lock in mode and runs fn.
func withRepo(c *ucli.Context, mode repo.LockMode, fn func(*repo.Repository) error) error {
	r, err := openRepo(c)
	if err != nil {
		return err
	}
	defer r.Close()
	l, err := r.Lock(c.Context, mode, c.Duration("lock-wait"), c.Command.FullName())
	if err != nil {
		return err
	}
	defer l.Unlock()
	return fn(r)
}
