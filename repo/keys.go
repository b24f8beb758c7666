package repo

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/argon2"
)

// Credentials unlock an encrypted repository: a password, or the bytes of a
// key file (a high-entropy secret, e.g. 32 random bytes).
type Credentials struct {
	Password []byte
	KeyFile  []byte
}

func (c Credentials) empty() bool { return len(c.Password) == 0 && len(c.KeyFile) == 0 }

// masterKeys are generated once at init and never change; key files wrap them.
type masterKeys struct {
	RepoID  string   `json:"repo_id"`
	Encrypt [32]byte `json:"encrypt"`
	Hash    [32]byte `json:"hash"`
}

// keyFile is the JSON stored in keys/<name>.json.
type keyFile struct {
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	Host    string    `json:"host,omitempty"`
	KDF     string    `json:"kdf"` // "argon2id" (password) or "hkdf-sha256" (key file)
	Time    uint32    `json:"argon2_time,omitempty"`
	Memory  uint32    `json:"argon2_memory_kib,omitempty"`
	Threads uint8     `json:"argon2_threads,omitempty"`
	Salt    []byte    `json:"salt"`
	Data    []byte    `json:"data"` // nonce || AES-256-GCM(JSON(masterKeys))
}

const (
	kdfArgon2 = "argon2id"
	kdfHKDF   = "hkdf-sha256"
)

func (k *keyFile) kek(c Credentials) ([]byte, error) {
	switch k.KDF {
	case kdfArgon2:
		if len(c.Password) == 0 {
			return nil, nil
		}
		if k.Time == 0 || k.Time > 64 || k.Memory == 0 || k.Memory > 4<<20 || k.Threads == 0 {
			return nil, fmt.Errorf("%w: key file has implausible argon2 parameters", ErrCorrupt)
		}
		return argon2.IDKey(c.Password, k.Salt, k.Time, k.Memory, k.Threads, 32), nil
	case kdfHKDF:
		if len(c.KeyFile) == 0 {
			return nil, nil
		}
		return hkdf.Key(sha256.New, c.KeyFile, k.Salt, "cairn key file v1", 32)
	default:
		return nil, fmt.Errorf("%w: key file uses unknown kdf %q", ErrFormat, k.KDF)
	}
}

func newKeyFile(c Credentials, mk *masterKeys) (*keyFile, error) {
	host, _ := os.Hostname()
	k := &keyFile{Version: 1, Created: time.Now().UTC(), Host: host, Salt: make([]byte, 32)}
	if _, err := rand.Read(k.Salt); err != nil {
		return nil, err
	}
	if len(c.KeyFile) > 0 {
		k.KDF = kdfHKDF
	} else {
		k.KDF, k.Time, k.Memory, k.Threads = kdfArgon2, 3, 64*1024, 2
	}
	kek, err := k.kek(c)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(mk)
	if err != nil {
		return nil, err
	}
	aead, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	k.Data = aead.Seal(nonce, nonce, plain, []byte(mk.RepoID))
	return k, nil
}

func (k *keyFile) unwrap(c Credentials, repoID string) (*masterKeys, error) {
	kek, err := k.kek(c)
	if err != nil || kek == nil {
		return nil, err
	}
	aead, err := gcm(kek)
	if err != nil {
		return nil, err
	}
	if len(k.Data) < nonceSize {
		return nil, nil
	}
	plain, err := aead.Open(nil, k.Data[:nonceSize], k.Data[nonceSize:], []byte(repoID))
	if err != nil {
		return nil, nil // not this key
	}
	var mk masterKeys
	if err := json.Unmarshal(plain, &mk); err != nil {
		return nil, fmt.Errorf("%w: key payload: %v", ErrCorrupt, err)
	}
	if mk.RepoID != repoID {
		return nil, fmt.Errorf("%w: key belongs to repository %s, not %s", ErrCorrupt, mk.RepoID, repoID)
	}
	return &mk, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// unlock tries every key file in dir until one opens with c.
func unlock(dir string, c Credentials, repoID string) (*masterKeys, error) {
	if c.empty() {
		return nil, fmt.Errorf("%w: the repository is encrypted; set CAIRN_PASSWORD, or pass --password-file or --key-file", ErrWrongPassword)
	}
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no key files in %s", ErrNotFound, dir)
	}
	var firstErr error
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", name, err)
		}
		var k keyFile
		if err := json.Unmarshal(raw, &k); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("%w: key %s: %v", ErrCorrupt, name, err)
			}
			continue
		}
		mk, err := k.unwrap(c, repoID)
		if err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("key %s: %w", name, err)
			}
			continue
		}
		if mk != nil {
			return mk, nil
		}
	}
	if firstErr != nil && !errors.Is(firstErr, ErrCorrupt) {
		return nil, firstErr
	}
	return nil, fmt.Errorf("%w: none of the %d key(s) in %s opens with it", ErrWrongPassword, len(names), dir)
}
