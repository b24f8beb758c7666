// Package lz4enc is an LZ4 block-format encoder for the small blocks cairn
// stores (at most 64 KiB each).
//
// It writes the plain LZ4 block format (no frame), which any conforming
// decoder reads; cairn decodes with github.com/pierrec/lz4/v4. The encoder
// follows reference lz4's LZ4_compress_fast for inputs under 64 KiB: match
// positions fit in 16 bits, so the hash table is 8192 uint16 entries (16 KiB,
// it stays in L1 cache) and clearing it per block is cheap; the search step
// grows on data that yields no matches, so incompressible blocks are scanned
// quickly. pierrec's general-purpose compressor keeps a 64 Ki-entry table
// plus a use bitmap for any input size, whose lookups miss the L1 cache on
// every block; for 64 KiB blocks this encoder is about twice as fast at a
// compression ratio within a few percent.
//
// Inputs larger than MaxInput are not accepted: callers use a general
// encoder for those.
package lz4enc
