package nbd

import (
	"context"
	"fmt"
)

// Extent is a range of the export with the status flags one metadata
// context gives it: for ContextAllocation StateHole and StateZero, for a
// dirty bitmap StateDirty, for ContextAllocationDepth the depth in the
// backing chain (0: unallocated, 1: the top image, ...).
type Extent struct {
	Offset, Length int64
	Flags          uint32
}

// End is the offset just past the extent.
func (e Extent) End() int64 { return e.Offset + e.Length }

// BlockStatus asks the server for the status of [off, off+length) in the
// metadata context name and returns consecutive extents starting at off.
// They may cover less than asked (servers answer in pieces); Extents walks
// a whole range.
func (c *Client) BlockStatus(ctx context.Context, off, length int64, name string) ([]Extent, error) {
	return c.blockStatus(ctx, off, length, name, 0)
}

// BlockStatusOne asks only for the extent at off (NBD_CMD_FLAG_REQ_ONE):
// a cheap probe, for instance whether a range is dirty. The server may
// still describe less than length.
func (c *Client) BlockStatusOne(ctx context.Context, off, length int64, name string) (Extent, error) {
	ext, err := c.blockStatus(ctx, off, length, name, cmdFlagReqOne)
	if err != nil {
		return Extent{}, err
	}
	return ext[0], nil
}

func (c *Client) blockStatus(ctx context.Context, off, length int64, name string, flags uint16) ([]Extent, error) {
	id, ok := c.contexts[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q (the server agreed to %q)", ErrNoMetaContext, name, c.MetaContexts())
	}
	if off < 0 || length <= 0 || off >= c.info.Size {
		return nil, fmt.Errorf("nbd: block status of [%d, +%d) outside the export (size %d)", off, length, c.info.Size)
	}
	align := int64(c.info.MinBlock)
	start := off - off%align
	end := min(off+min(length, c.info.Size-off), start+maxStatusLength)
	if r := end % align; r != 0 {
		end = min(end+align-r, c.info.Size)
	}
	r := newRequest(cmdBlockStatus, uint64(start), uint32(end-start))
	r.keepCtx, r.flags = id, flags
	if err := c.do(ctx, r); err != nil {
		return nil, err
	}
	// Clip to [off, off+length): the request was widened to block bounds.
	ext := r.extents[:0]
	for _, e := range r.extents {
		if e.End() <= off {
			continue
		}
		if e.Offset < off {
			e.Length, e.Offset = e.End()-off, off
		}
		if e.End() > off+length {
			e.Length = off + length - e.Offset
		}
		if e.Length > 0 {
			ext = append(ext, e)
		}
	}
	if len(ext) == 0 {
		// Only an extent entirely before off: the server answered less
		// than the first aligned block, which gives no progress.
		return nil, protoErr("block status for [%d, +%d) answered only up to %d", off, length, r.extents[len(r.extents)-1].End())
	}
	return ext, nil
}

// Extents calls fn for the extents of [off, off+length) in the metadata
// context name, in order, adjacent extents with equal flags merged, asking
// the server as many times as it takes. If fn returns an error, Extents
// stops and returns it.
func (c *Client) Extents(ctx context.Context, off, length int64, name string, fn func(Extent) error) error {
	end := off + min(length, c.info.Size-off)
	var cur Extent
	for pos := off; pos < end; {
		ext, err := c.BlockStatus(ctx, pos, end-pos, name)
		if err != nil {
			return err
		}
		for _, e := range ext {
			if cur.Length > 0 && cur.End() == e.Offset && cur.Flags == e.Flags {
				cur.Length += e.Length
				continue
			}
			if cur.Length > 0 {
				if err := fn(cur); err != nil {
					return err
				}
			}
			cur = e
		}
		pos = ext[len(ext)-1].End() // > pos: BlockStatus guarantees progress
	}
	if cur.Length > 0 {
		return fn(cur)
	}
	return nil
}
