package repo

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func testCodecs(t *testing.T) map[string]*blobCodec {
	t.Helper()
	ekey, hkey := [32]byte{9}, [32]byte{8}
	s, err := newSealer(&ekey)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*blobCodec{
		"plain":     {seal: &sealer{}, hasher: NewHasher(nil)},
		"encrypted": {seal: s, hasher: NewHasher(&hkey)},
	}
}

func TestBlobCodecRoundTrip(t *testing.T) {
	inputs := map[string][]byte{
		"empty":              {},
		"one byte":           {7},
		"random 4K":          blockData(1, 4096),
		"text 4K":            compressibleBlock("text", 4096),
		"0xff 64K":           bytes.Repeat([]byte{0xff}, 64<<10),
		"0xff 4M":            bytes.Repeat([]byte{0xff}, 4<<20), // near lz4's best ratio
		"zeros 16M":          make([]byte, 16<<20),
		"random 64K + zeros": append(blockData(2, 64<<10), make([]byte, 64<<10)...),
	}
	comp := newCompressor()
	for cname, c := range testCodecs(t) {
		for name, data := range inputs {
			t.Run(cname+"/"+name, func(t *testing.T) {
				id := c.hasher.Sum(data)
				stored := c.encode(nil, BlobData, id, data, comp)
				if len(stored) > len(data)+1+c.seal.Overhead() {
					t.Fatalf("%d bytes stored as %d", len(data), len(stored))
				}
				if len(data) >= 4096 && !bytes.Equal(data, blockData(1, 4096)) && len(stored) >= len(data)*9/10 {
					t.Errorf("compressible data not compressed: %d -> %d", len(data), len(stored))
				}
				got, err := c.decode(BlobData, id, stored)
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("decode: %v (%d bytes, want %d)", err, len(got), len(data))
				}
				// decode must not destroy its input (check and prune re-use it).
				if again, err := c.decode(BlobData, id, stored); err != nil || !bytes.Equal(again, data) {
					t.Fatalf("second decode of the same bytes: %v", err)
				}
				other := c.hasher.Sum(append(bytes.Clone(data), 1))
				if _, err := c.decode(BlobData, other, stored); !errors.Is(err, ErrCorrupt) {
					t.Errorf("decode under another ID: %v", err)
				}
				if cname == "encrypted" {
					if _, err := c.decode(BlobTable, id, stored); !errors.Is(err, ErrCorrupt) {
						t.Errorf("data blob accepted as a table: %v", err)
					}
				}
				if len(stored) > 1 {
					if _, err := c.decode(BlobData, id, stored[:len(stored)-1]); !errors.Is(err, ErrCorrupt) {
						t.Errorf("truncated blob: %v", err)
					}
				}
			})
		}
	}
}

// TestBlobDecodeOutputBuffer: decodeInto writes into the caller's buffer
// and the pooled encode buffers never leak one blob's bytes into another.
func TestBlobDecodeOutputBuffer(t *testing.T) {
	comp := newCompressor()
	for cname, c := range testCodecs(t) {
		var stored [][]byte
		var datas [][]byte
		for i := 0; i < 20; i++ {
			d := blockData(uint64(i+1), 1000+i*997)
			if i%2 == 1 {
				d = compressibleBlock(fmt.Sprint(i), 5000+i)
			}
			datas = append(datas, d)
			stored = append(stored, c.encode(nil, BlobData, c.hasher.Sum(d), d, comp))
		}
		dst := make([]byte, 0, 64)
		for i, s := range stored {
			got, err := c.decodeInto(dst, BlobData, c.hasher.Sum(datas[i]), bytes.Clone(s))
			if err != nil || !bytes.Equal(got, datas[i]) {
				t.Fatalf("%s blob %d: %v", cname, i, err)
			}
			dst = got[:0]
		}
	}
}

func TestBlobDecodeRejects(t *testing.T) {
	c := testCodecs(t)["plain"]
	for name, stored := range map[string][]byte{
		"empty":                 {},
		"unknown codec":         {7, 1, 2, 3},
		"lz4 without length":    {codecLZ4},
		"lz4 length overflow":   {codecLZ4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"lz4 over 64 MiB":       append([]byte{codecLZ4, 0x81, 0x80, 0x80, 0x20}, make([]byte, 1<<20)...),
		"lz4 ratio over 255":    {codecLZ4, 0x80, 0x80, 0x04, 0x1f, 0x00, 0x01},
		"lz4 garbage":           {codecLZ4, 100, 0xff, 0xff, 0xff},
		"lz4 short of its size": {codecLZ4, 10, 0x50, 'a', 'b', 'c', 'd', 'e'},
		"lz4 of size 0":         {codecLZ4, 0, 0x30, '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0'},
		"lz4 empty":             {codecLZ4, 0},
	} {
		if data, err := c.decode(BlobData, c.hasher.Sum(nil), stored); !errors.Is(err, ErrCorrupt) || data != nil {
			t.Errorf("%s: %d bytes, %v", name, len(data), err)
		}
	}
}

func TestSealer(t *testing.T) {
	key := [32]byte{1}
	s, err := newSealer(&key)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("the quick brown fox")
	a := s.seal(nil, msg, []byte("aad"))
	b := s.seal(nil, msg, []byte("aad"))
	if bytes.Equal(a, b) {
		t.Fatal("two seals of one message are identical: nonce reuse")
	}
	if len(a) != len(msg)+s.Overhead() || bytes.Contains(a, msg) {
		t.Fatalf("sealed form: %d bytes", len(a))
	}
	got, err := s.open([]byte("prefix:"), a, []byte("aad"))
	if err != nil || string(got) != "prefix:"+string(msg) {
		t.Fatalf("open: %q %v", got, err)
	}
	if _, err := s.open(nil, a, []byte("other")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("wrong aad: %v", err)
	}
	if _, err := s.open(nil, a[:10], nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short: %v", err)
	}
	in := bytes.Clone(a)
	got, err = s.openInPlace(in, []byte("aad"))
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("openInPlace: %v", err)
	}
	plain := &sealer{}
	if plain.Overhead() != 0 || !bytes.Equal(plain.seal(nil, msg, nil), msg) {
		t.Fatal("plain sealer changes data")
	}
}

func TestIndexValueRoundTrip(t *testing.T) {
	e := packEntry{Type: BlobTable, ID: ID{3, 4}, Location: Location{Pack: PackID{5, 6}, Offset: 1234567, Length: 89}}
	v := encodeIndexValue(e)
	got, err := decodeIndexValue(e.ID, v)
	if err != nil || got != e {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	v[24] = 3
	if _, err := decodeIndexValue(e.ID, v); !errors.Is(err, ErrCorrupt) {
		t.Errorf("unknown type: %v", err)
	}
	if _, err := decodeIndexValue(e.ID, v[:24]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short value: %v", err)
	}
}
