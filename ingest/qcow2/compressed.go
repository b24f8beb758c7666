package qcow2

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"
)

const (
	// Decompressed clusters kept per image, bounded by clusterCacheBytes.
	maxCachedClusters = 8
	clusterCacheBytes = 8 << 20
	// zstdMaxWindow bounds the memory a hostile zstd frame can demand.
	// QEMU compresses one cluster (at most 2 MiB) per frame.
	zstdMaxWindow = 8 << 20
)

// compressedSpan decodes a compressed cluster descriptor into the host
// offset of the compressed data and its length as QEMU computes it: the
// data runs from the offset to the end of the last sector counted.
func (im *Image) compressedSpan(desc uint64) (off, n int64) {
	shift := 62 - (im.clusterBits - 8)
	off = int64(desc & (uint64(1)<<shift - 1))
	sectors := int64((desc>>shift)&(uint64(1)<<(im.clusterBits-8)-1)) + 1
	return off, sectors*512 - off&511
}

// readCompressed copies the bytes of the compressed cluster desc starting
// at offset within into dst.
func (im *Image) readCompressed(dst []byte, desc uint64, within int64) error {
	data, err := im.decompressCluster(desc)
	if err != nil {
		return err
	}
	copy(dst, data[within:])
	return nil
}

// decompressCluster returns the decompressed contents of a compressed
// cluster, from the per-image cache when possible. The returned slice must
// not be modified.
func (im *Image) decompressCluster(desc uint64) ([]byte, error) {
	if b := im.comp.get(desc); b != nil {
		return b, nil
	}
	off, n := im.compressedSpan(desc)
	if off >= im.fileSize {
		return nil, fmt.Errorf("compressed cluster (descriptor %#x): %w: data offset %#x lies past the end of the file (%d bytes)", desc, ErrTruncated, off, im.fileSize)
	}
	// Bytes of the span past the end of the file read as zeros, as they
	// do in QEMU (the last compressed cluster need not fill its sector).
	src := make([]byte, n)
	if _, err := readFullAt(im.f, src, off); err != nil {
		return nil, fmt.Errorf("compressed cluster at %#x: read: %w", off, err)
	}
	out := make([]byte, im.clusterSize)
	var err error
	switch im.comp.typ {
	case compressionZstd:
		err = inflateZstd(out, src)
	default:
		err = inflateDeflate(out, src)
	}
	if err != nil {
		return nil, fmt.Errorf("compressed cluster at %#x (%d bytes): %w: %w", off, n, ErrCorrupt, err)
	}
	im.comp.put(desc, out)
	return out, nil
}

var flatePool sync.Pool // of io.ReadCloser implementing flate.Resetter

// inflateDeflate fills out from the raw deflate stream at the start of src.
// Like QEMU, it requires the stream to produce a whole cluster and ignores
// whatever follows in src.
func inflateDeflate(out, src []byte) error {
	br := bytes.NewReader(src)
	var fr io.ReadCloser
	if v := flatePool.Get(); v != nil {
		fr = v.(io.ReadCloser)
		if err := fr.(flate.Resetter).Reset(br, nil); err != nil {
			return fmt.Errorf("deflate: %w", err)
		}
	} else {
		fr = flate.NewReader(br)
	}
	defer flatePool.Put(fr)
	if _, err := io.ReadFull(fr, out); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return errors.New("deflate: stream ends before a whole cluster")
		}
		return fmt.Errorf("deflate: %w", err)
	}
	return nil
}

var zstdPool sync.Pool // of *zstd.Decoder

// onlyReader hides the Bytes/Len methods of its reader so that the zstd
// decoder streams it instead of decoding it whole, which would fail on the
// bytes that follow the frame inside the last sector.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// inflateZstd fills out from the zstd frame(s) at the start of src. Like
// QEMU, it requires a whole cluster of output, ignores trailing bytes and
// rejects a frame that declares more content than a cluster.
func inflateZstd(out, src []byte) error {
	var fh zstd.Header
	if err := fh.Decode(src); err != nil {
		return fmt.Errorf("zstd: frame header: %w", err)
	}
	if fh.HasFCS && fh.FrameContentSize > uint64(len(out)) {
		return fmt.Errorf("zstd: frame content size %d exceeds the cluster size %d", fh.FrameContentSize, len(out))
	}
	var d *zstd.Decoder
	if v := zstdPool.Get(); v != nil {
		d = v.(*zstd.Decoder)
	} else {
		var err error
		d, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow),
			zstd.WithDecoderMaxMemory(zstdMaxWindow))
		if err != nil {
			return fmt.Errorf("zstd: %w", err)
		}
	}
	defer func() {
		d.Reset(nil)
		zstdPool.Put(d)
	}()
	if err := d.Reset(onlyReader{bytes.NewReader(src)}); err != nil {
		return fmt.Errorf("zstd: %w", err)
	}
	if _, err := io.ReadFull(d, out); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return errors.New("zstd: stream ends before a whole cluster")
		}
		return fmt.Errorf("zstd: %w", err)
	}
	return nil
}

// clusterCache keeps a few recently decompressed clusters so that reads
// smaller than a cluster do not decompress it again and again.
type clusterCache struct {
	typ   uint8
	mu    sync.Mutex
	max   int
	keys  []uint64
	datas [][]byte
	next  int
}

func newClusterCache(typ uint8, clusterSize int64) *clusterCache {
	n := max(1, min(maxCachedClusters, int(clusterCacheBytes/clusterSize)))
	return &clusterCache{typ: typ, max: n}
}

func (c *clusterCache) get(desc uint64) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range c.keys {
		if k == desc {
			return c.datas[i]
		}
	}
	return nil
}

func (c *clusterCache) put(desc uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.keys) < c.max {
		c.keys = append(c.keys, desc)
		c.datas = append(c.datas, data)
		return
	}
	c.keys[c.next], c.datas[c.next] = desc, data
	c.next = (c.next + 1) % c.max
}
