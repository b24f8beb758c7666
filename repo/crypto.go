package repo

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"fmt"

	"github.com/zeebo/blake3"
)

// sealer authenticates and (optionally) encrypts everything the repository
// stores: blobs, pack trailers and restore point manifests.
//
// Encrypted: nonce (12 random bytes) || AES-256-GCM(plaintext, aad).
// Plain:     plaintext (integrity then rests on the blob hash alone).
type sealer struct {
	aead cipher.AEAD // nil when the repository is not encrypted
}

const nonceSize = 12

func newSealer(key *[32]byte) (*sealer, error) {
	if key == nil {
		return &sealer{}, nil
	}
	block, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead}, nil
}

// Overhead is the number of bytes seal adds.
func (s *sealer) Overhead() int {
	if s.aead == nil {
		return 0
	}
	return nonceSize + s.aead.Overhead()
}

// seal appends the sealed form of plain to dst.
func (s *sealer) seal(dst, plain, aad []byte) []byte {
	if s.aead == nil {
		return append(dst, plain...)
	}
	start := len(dst)
	dst = append(dst, make([]byte, nonceSize)...)
	if _, err := rand.Read(dst[start:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return s.aead.Seal(dst, dst[start:start+nonceSize], plain, aad)
}

// open returns the plaintext of sealed appended to dst, leaving sealed
// intact. A failed authentication returns ErrCorrupt.
func (s *sealer) open(dst, sealed, aad []byte) ([]byte, error) {
	plain, err := s.openInPlace(bytes.Clone(sealed), aad)
	if err != nil {
		return nil, err
	}
	return append(dst, plain...), nil
}

// openInPlace authenticates and decrypts sealed, reusing its memory; the
// returned plaintext aliases sealed.
func (s *sealer) openInPlace(sealed, aad []byte) ([]byte, error) {
	if s.aead == nil {
		return sealed, nil
	}
	if len(sealed) < nonceSize+s.aead.Overhead() {
		return nil, fmt.Errorf("%w: sealed data too short (%d bytes)", ErrCorrupt, len(sealed))
	}
	ct := sealed[nonceSize:]
	out, err := s.aead.Open(ct[:0], sealed[:nonceSize], ct, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrCorrupt)
	}
	return out, nil
}

// metaSumSize is the checksum that sealMeta appends in unencrypted
// repositories, where no AEAD tag protects metadata.
const metaSumSize = 16

// sealMeta seals metadata (pack trailers, restore points). Unencrypted, it
// appends the first 16 bytes of BLAKE3(aad || plain), so a damaged trailer
// or restore point is detected like in an encrypted repository. Blobs do
// not need this: their ID is the hash of their plaintext.
func (s *sealer) sealMeta(dst, plain, aad []byte) []byte {
	if s.aead != nil {
		return s.seal(dst, plain, aad)
	}
	sum := metaSum(plain, aad)
	return append(append(dst, plain...), sum[:metaSumSize]...)
}

// openMeta reverses sealMeta, decrypting in place; a mismatch is ErrCorrupt.
func (s *sealer) openMeta(sealed, aad []byte) ([]byte, error) {
	if s.aead != nil {
		return s.openInPlace(sealed, aad)
	}
	if len(sealed) < metaSumSize {
		return nil, fmt.Errorf("%w: metadata too short (%d bytes)", ErrCorrupt, len(sealed))
	}
	plain := sealed[:len(sealed)-metaSumSize]
	sum := metaSum(plain, aad)
	if !bytes.Equal(sum[:metaSumSize], sealed[len(plain):]) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return plain, nil
}

func metaSum(plain, aad []byte) [32]byte {
	h := blake3.New()
	h.Write(aad)
	h.Write(plain)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
