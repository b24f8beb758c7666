package repo

import (
	"encoding/json"
	"fmt"
)

// FormatVersion is the repository format this build writes and reads.
const FormatVersion = 1

// Config is the plaintext repository description in REPO/config. It holds no
// secrets; encrypted repositories keep their keys in REPO/keys/.
type Config struct {
	Version     int    `json:"version"`
	ID          string `json:"id"`
	BlockSize   int    `json:"block_size"`  // bytes per disk block; a power of two
	TableSize   int    `json:"table_size"`  // block entries per block table
	PackSize    int64  `json:"pack_size"`   // target pack size in bytes
	Encryption  string `json:"encryption"`  // "aes-256-gcm" or "none"
	Hash        string `json:"hash"`        // "blake3" or "blake3-keyed"
	Compression string `json:"compression"` // "lz4"
}

const (
	// DefaultBlockSize: see FORMAT.md, "Choice of block size".
	DefaultBlockSize = 64 << 10
	// DefaultTableSize: a block table covers 1024 blocks (64 MiB of disk at
	// the default block size) and encodes to 56 KiB.
	DefaultTableSize = 1024
	DefaultPackSize  = 32 << 20
	encAESGCM        = "aes-256-gcm"
	encNone          = "none"
)

func (c *Config) validate() error {
	if c.Version != FormatVersion {
		return fmt.Errorf("%w: repository format %d, this cairn reads %d; use a matching cairn release", ErrFormat, c.Version, FormatVersion)
	}
	if c.BlockSize < 4096 || c.BlockSize > 16<<20 || c.BlockSize&(c.BlockSize-1) != 0 {
		return fmt.Errorf("%w: block size %d is not a power of two in [4 KiB, 16 MiB]", ErrCorrupt, c.BlockSize)
	}
	if c.TableSize < 16 || c.TableSize > 1<<20 {
		return fmt.Errorf("%w: table size %d out of range", ErrCorrupt, c.TableSize)
	}
	if c.PackSize < 1<<20 || c.PackSize > 1<<30 {
		return fmt.Errorf("%w: pack size %d out of range [1 MiB, 1 GiB]", ErrCorrupt, c.PackSize)
	}
	if c.Encryption != encAESGCM && c.Encryption != encNone {
		return fmt.Errorf("%w: unknown encryption %q", ErrFormat, c.Encryption)
	}
	return nil
}

func decodeConfig(raw []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: config: %v", ErrCorrupt, err)
	}
	return &c, c.validate()
}

// Encrypted reports whether blobs and manifests are encrypted.
func (c *Config) Encrypted() bool { return c.Encryption == encAESGCM }
