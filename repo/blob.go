package repo

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync"

	"github.com/pierrec/lz4/v4"

	"github.com/cairn-backup/cairn/repo/internal/lz4enc"
)

// BlobType tells data blocks from block tables; it is bound into each
// blob's authentication data so one cannot be passed off as the other.
type BlobType uint8

const (
	BlobData  BlobType = 1 // a disk block
	BlobTable BlobType = 2 // a block table (see table.go)
)

func (t BlobType) String() string {
	switch t {
	case BlobData:
		return "data"
	case BlobTable:
		return "table"
	}
	return fmt.Sprintf("type%d", uint8(t))
}

const (
	codecRaw = 0
	codecLZ4 = 1
	// maxBlobSize bounds what a decoder will allocate for one blob.
	maxBlobSize = 64 << 20
)

// blobCodec turns plaintext blobs into stored bytes and back. Encoding:
//
//	plain   := codec(1) payload
//	payload := data                         (codecRaw)
//	         | uvarint(len(data)) lz4block  (codecLZ4)
//	stored  := seal(plain, aad = type(1) || id(32))
type blobCodec struct {
	seal   *sealer
	hasher *Hasher
}

// encode appends the stored form of data to dst; comp may be reused per goroutine.
func (c *blobCodec) encode(dst []byte, t BlobType, id ID, data []byte, comp *compressor) []byte {
	bp := plainPool.Get().(*[]byte)
	defer plainPool.Put(bp)
	hdr := 1 + binary.MaxVarintLen64
	plain := slices.Grow((*bp)[:0], hdr+len(data))
	plain = append(plain, codecLZ4)
	plain = binary.AppendUvarint(plain, uint64(len(data)))
	hdr = len(plain)
	// A destination smaller than the bound makes lz4 give up as soon as
	// the output would not save at least 1/32: incompressible blocks cost
	// little time.
	limit := len(data) - len(data)/32 - hdr
	n := 0
	if limit > 0 {
		n = comp.compress(data, plain[hdr:hdr+limit])
	}
	if n == 0 {
		plain = append(plain[:0], codecRaw)
		plain = append(plain, data...)
	} else {
		plain = plain[:hdr+n]
	}
	*bp = plain
	return c.seal.seal(dst, plain, blobAAD(t, id))
}

// plainPool holds scratch buffers for blob plaintexts.
var plainPool = sync.Pool{New: func() any { b := make([]byte, 0, 128<<10); return &b }}

// decode returns the plaintext of a stored blob after checking that it
// hashes to id. Anything else is ErrCorrupt.
func (c *blobCodec) decode(t BlobType, id ID, stored []byte) ([]byte, error) {
	return c.decodeInto(nil, t, id, slices.Clone(stored))
}

// decodeInto is decode writing the plaintext into dst (grown if needed).
// It decrypts stored in place, destroying it.
func (c *blobCodec) decodeInto(dst []byte, t BlobType, id ID, stored []byte) ([]byte, error) {
	plain, err := c.seal.openInPlace(stored, blobAAD(t, id))
	if err != nil {
		return nil, err
	}
	if len(plain) == 0 {
		return nil, fmt.Errorf("%w: empty blob", ErrCorrupt)
	}
	var data []byte
	switch plain[0] {
	case codecRaw:
		data = append(dst[:0], plain[1:]...)
	case codecLZ4:
		size, n := binary.Uvarint(plain[1:])
		// An lz4 block expands at most 255-fold (a length byte adds at most
		// 255 bytes of match), so a larger claim is corrupt and must not
		// make a few bytes allocate up to maxBlobSize. Size 0 is corrupt too
		// (encode stores empty data raw) and must not reach lz4: Grow(nil, 0)
		// is nil, and the amd64 decoder writes through a nil dst.
		if n <= 0 || size == 0 || size > maxBlobSize || size > 255*uint64(len(plain)-1-n) {
			return nil, fmt.Errorf("%w: bad lz4 length", ErrCorrupt)
		}
		data = slices.Grow(dst[:0], int(size))[:size]
		got, err := lz4.UncompressBlock(plain[1+n:], data)
		if err != nil || uint64(got) != size {
			return nil, fmt.Errorf("%w: lz4: %d of %d bytes: %v", ErrCorrupt, got, size, err)
		}
	default:
		return nil, fmt.Errorf("%w: unknown codec %d", ErrCorrupt, plain[0])
	}
	if c.hasher.Sum(data) != id {
		return nil, fmt.Errorf("%w: %s blob %s does not match its hash", ErrCorrupt, t, id.Short())
	}
	return data, nil
}

func blobAAD(t BlobType, id ID) []byte {
	aad := make([]byte, 33)
	aad[0] = byte(t)
	copy(aad[1:], id[:])
	return aad
}

// compressor writes lz4 blocks; it may be reused, by one goroutine at a time.
// Blobs of up to 64 KiB (data blocks at the default block size) go through
// lz4enc, tuned for them; larger ones through pierrec's general encoder.
// Both write the same lz4 block format.
type compressor struct {
	small lz4enc.Encoder
	large *lz4.Compressor
}

func newCompressor() *compressor { return new(compressor) }

// compress writes src as an lz4 block into dst and returns its length, or
// 0 if it does not fit.
func (c *compressor) compress(src, dst []byte) int {
	if len(src) <= lz4enc.MaxInput {
		return c.small.Compress(src, dst)
	}
	if c.large == nil {
		c.large = new(lz4.Compressor)
	}
	n, err := c.large.CompressBlock(src, dst)
	if err != nil {
		return 0
	}
	return n
}
