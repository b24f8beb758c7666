package repo

import (
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"
)

// ID names a blob: the BLAKE3-256 hash of its plaintext, keyed with the
// repository's hash key when the repository is encrypted (so IDs reveal
// nothing about content to someone without the key).
type ID [32]byte

// ZeroID is never the hash of real data; a block table entry with ZeroID is an
// all-zero block that occupies no storage.
var ZeroID ID

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is ZeroID.
func (id ID) IsZero() bool { return id == ZeroID }

// ParseID decodes a 64-hex-digit ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("invalid blob id %q: want 64 hex digits", s)
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err
}

// Hasher computes blob IDs. It is safe for concurrent use.
type Hasher struct {
	key *[32]byte // nil: unkeyed
	// keyed recycles keyed BLAKE3 states: a fresh one is ~6.5 KiB to
	// allocate and clear, once per block stored, verified or checked.
	keyed sync.Pool
}

// NewHasher returns a hasher, keyed when key is non-nil.
func NewHasher(key *[32]byte) *Hasher { return &Hasher{key: key} }

// Sum returns the ID of data.
func (h *Hasher) Sum(data []byte) ID {
	if h.key == nil {
		return ID(blake3.Sum256(data))
	}
	k, _ := h.keyed.Get().(*blake3.Hasher)
	if k == nil {
		var err error
		if k, err = blake3.NewKeyed(h.key[:]); err != nil {
			panic(err) // key length is fixed at 32
		}
	} else {
		k.Reset()
	}
	k.Write(data)
	var id ID
	k.Sum(id[:0])
	h.keyed.Put(k)
	return id
}

// MarshalText encodes the ID as hex (for JSON manifests).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a hex ID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	*id = v
	return err
}
