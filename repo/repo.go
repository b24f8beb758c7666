package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Repository is an opened repository. Reading restore points and blobs is
// safe for concurrent use.
type Repository struct {
	dir   string
	cfg   *Config
	codec *blobCodec
	packs *packFiles
}

// InitOptions configure a new repository.
type InitOptions struct {
	Encrypt     bool
	Credentials Credentials // required when Encrypt
	BlockSize   int         // 0: DefaultBlockSize
	PackSize    int64       // 0: DefaultPackSize
}

var repoDirs = []string{"keys", "packs", "points", "index", "tmp", "locks"}

// Init creates a repository in dir, which must be absent or empty.
func Init(dir string, o InitOptions) (*Repository, error) {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
			return nil, fmt.Errorf("%w: %s is already a cairn repository", ErrExists, dir)
		}
		return nil, fmt.Errorf("%w: %s is not empty; choose an empty or new directory", ErrExists, dir)
	}
	cfg := &Config{
		Version: FormatVersion, ID: randomHex(16), BlockSize: o.BlockSize, TableSize: DefaultTableSize,
		PackSize: o.PackSize, Encryption: encNone, Hash: "blake3", Compression: "lz4",
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = DefaultBlockSize
	}
	if cfg.PackSize == 0 {
		cfg.PackSize = DefaultPackSize
	}
	if o.Encrypt {
		if o.Credentials.empty() {
			return nil, fmt.Errorf("encryption needs a password or key file: set CAIRN_PASSWORD, or pass --password-file or --key-file (or --encryption none)")
		}
		cfg.Encryption, cfg.Hash = encAESGCM, "blake3-keyed"
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	for _, d := range repoDirs {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, fmt.Errorf("create repository: %w", err)
		}
	}
	if o.Encrypt {
		mk := &masterKeys{RepoID: cfg.ID}
		if _, err := randRead(mk.Encrypt[:]); err != nil {
			return nil, err
		}
		if _, err := randRead(mk.Hash[:]); err != nil {
			return nil, err
		}
		kf, err := newKeyFile(o.Credentials, mk)
		if err != nil {
			return nil, err
		}
		raw, _ := json.MarshalIndent(kf, "", "  ")
		if err := writeFileAtomic(filepath.Join(dir, "keys", randomHex(8)+".json"), raw, 0o600); err != nil {
			return nil, err
		}
	}
	raw, _ := json.MarshalIndent(cfg, "", "  ")
	// config is written last: a directory without it is not a repository.
	if err := writeFileAtomic(filepath.Join(dir, "config"), raw, 0o600); err != nil {
		return nil, err
	}
	return Open(dir, o.Credentials)
}

// Open opens the repository in dir.
func Open(dir string, c Credentials) (*Repository, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "config"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: no cairn repository at %s (create one with `cairn init`, or set --repo / CAIRN_REPO)", ErrNotFound, dir)
		}
		return nil, fmt.Errorf("open repository: %w", err)
	}
	cfg, err := decodeConfig(raw)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", dir, err)
	}
	keys, _ := filepath.Glob(filepath.Join(dir, "keys", "*.json"))
	var encKey, hashKey *[32]byte
	if cfg.Encrypted() {
		mk, err := unlock(filepath.Join(dir, "keys"), c, cfg.ID)
		if err != nil {
			return nil, fmt.Errorf("repository %s: %w", dir, err)
		}
		encKey, hashKey = &mk.Encrypt, &mk.Hash
	} else if len(keys) > 0 {
		return nil, fmt.Errorf("%w: repository %s has key files but its config says it is not encrypted; refusing to trust it", ErrCorrupt, dir)
	}
	s, err := newSealer(encKey)
	if err != nil {
		return nil, err
	}
	return &Repository{
		dir:   dir,
		cfg:   cfg,
		codec: &blobCodec{seal: s, hasher: NewHasher(hashKey)},
		packs: newPackFiles(dir),
	}, nil
}

// Close releases open files.
func (r *Repository) Close() error {
	r.packs.close()
	return nil
}

// Dir is the repository directory.
func (r *Repository) Dir() string { return r.dir }

// Config returns the repository configuration.
func (r *Repository) Config() Config { return *r.cfg }

// Hasher computes blob IDs for this repository.
func (r *Repository) Hasher() *Hasher { return r.codec.hasher }

// AddKey adds a key file that unlocks the repository with c.
func (r *Repository) AddKey(existing, c Credentials) error {
	if !r.cfg.Encrypted() {
		return fmt.Errorf("repository %s is not encrypted", r.dir)
	}
	mk, err := unlock(filepath.Join(r.dir, "keys"), existing, r.cfg.ID)
	if err != nil {
		return err
	}
	kf, err := newKeyFile(c, mk)
	if err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(kf, "", "  ")
	return writeFileAtomic(filepath.Join(r.dir, "keys", randomHex(8)+".json"), raw, 0o600)
}
