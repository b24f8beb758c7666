package cli

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/repo"
)

func initCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "init",
		Usage: "create a repository",
		Description: "Creates a repository in --repo (an empty or new directory).\n" +
			"Encrypted by default: give a password (CAIRN_PASSWORD or --password-file) or a key\n" +
			"file (--key-file; created with 32 random bytes if it does not exist).\n" +
			"Use --encryption none for an unencrypted repository.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "encryption", Value: "aes-256-gcm", Usage: "aes-256-gcm or none"},
			&ucli.IntFlag{Name: "block-size", Value: repo.DefaultBlockSize, Usage: "bytes per deduplicated block (power of two, 4 KiB-16 MiB)"},
		},
		Action: runInit,
	}
}

func runInit(c *ucli.Context) error {
	dir, err := repoDir(c)
	if err != nil {
		return err
	}
	enc := c.String("encryption")
	if enc != "aes-256-gcm" && enc != "none" {
		return usageErr("--encryption must be aes-256-gcm or none")
	}
	if kf := c.String("key-file"); kf != "" && enc != "none" {
		if err := createKeyFile(kf); err != nil {
			return err
		}
	}
	cr, err := credentials(c)
	if err != nil {
		return err
	}
	r, err := repo.Init(dir, repo.InitOptions{Encrypt: enc != "none", Credentials: cr, BlockSize: c.Int("block-size")})
	if err != nil {
		return err
	}
	defer r.Close()
	cfg := r.Config()
	if c.Bool("json") {
		return printJSON(c, map[string]any{"repository": dir, "id": cfg.ID, "encryption": cfg.Encryption, "block_size": cfg.BlockSize, "version": cfg.Version})
	}
	fmt.Fprintf(c.App.Writer, "created repository %s at %s (encryption %s, block size %s)\n", cfg.ID[:8], dir, cfg.Encryption, bytesIEC(int64(cfg.BlockSize)))
	if cfg.Encrypted() {
		fmt.Fprintln(c.App.Writer, "keep the password or key file safe: without it the backups cannot be read")
	}
	return nil
}

// createKeyFile writes 32 random bytes to path unless it exists.
func createKeyFile(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
