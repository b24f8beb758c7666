package nbd

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/bits"
)

// ExportInfo describes an export as the server announced it.
type ExportInfo struct {
	Name  string
	Size  int64  // bytes
	Flags uint16 // transmission flags (FlagReadOnly, FlagCanMultiConn, ...)
	// Block size constraints (NBD_INFO_BLOCK_SIZE). Requests are aligned to
	// MinBlock and read payloads never exceed MaxBlock. When the server does
	// not advertise them: 1, 4096 and 32 MiB.
	MinBlock, PreferredBlock, MaxBlock uint32
}

// ReadOnly reports whether the server exports the disk read-only.
func (i ExportInfo) ReadOnly() bool { return i.Flags&FlagReadOnly != 0 }

// negotiation runs the fixed newstyle handshake on a fresh connection.
type negotiation struct {
	rw       io.ReadWriter
	noZeroes bool
}

func (n *negotiation) greet() error {
	var b [18]byte
	if _, err := io.ReadFull(n.rw, b[:]); err != nil {
		return fmt.Errorf("nbd: reading the server greeting: %w", unexpectedEOF(err))
	}
	if binary.BigEndian.Uint64(b[0:]) != magicInit {
		return protoErr("greeting does not start with NBDMAGIC: not an NBD server")
	}
	if m := binary.BigEndian.Uint64(b[8:]); m != magicOpt {
		return protoErr("server uses the oldstyle handshake (magic %#x); only fixed newstyle is supported", m)
	}
	hs := binary.BigEndian.Uint16(b[16:])
	if hs&flagFixedNewstyle == 0 {
		return protoErr("server does not support the fixed newstyle handshake")
	}
	client := uint32(flagFixedNewstyle)
	if hs&flagNoZeroes != 0 {
		client |= flagNoZeroes
		n.noZeroes = true
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], client)
	return n.write(c[:])
}

func (n *negotiation) write(b []byte) error {
	if _, err := n.rw.Write(b); err != nil {
		return fmt.Errorf("nbd: handshake: %w", err)
	}
	return nil
}

func (n *negotiation) sendOpt(opt uint32, data []byte) error {
	b := make([]byte, 16+len(data))
	binary.BigEndian.PutUint64(b[0:], magicOpt)
	binary.BigEndian.PutUint32(b[8:], opt)
	binary.BigEndian.PutUint32(b[12:], uint32(len(data)))
	copy(b[16:], data)
	return n.write(b)
}

// reply reads one option reply to opt.
func (n *negotiation) reply(opt uint32) (typ uint32, data []byte, err error) {
	var h [20]byte
	if _, err := io.ReadFull(n.rw, h[:]); err != nil {
		return 0, nil, fmt.Errorf("nbd: reading reply to %s: %w", optName(opt), unexpectedEOF(err))
	}
	if m := binary.BigEndian.Uint64(h[0:]); m != magicOptReply {
		return 0, nil, protoErr("option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		return 0, nil, protoErr("reply to option %d while %s was asked", o, optName(opt))
	}
	typ = binary.BigEndian.Uint32(h[12:])
	length := binary.BigEndian.Uint32(h[16:])
	if length > maxOptReply {
		return 0, nil, protoErr("%d-byte reply to %s", length, optName(opt))
	}
	data = make([]byte, length)
	if _, err := io.ReadFull(n.rw, data); err != nil {
		return 0, nil, fmt.Errorf("nbd: reading reply to %s: %w", optName(opt), unexpectedEOF(err))
	}
	return typ, data, nil
}

func optError(opt, typ uint32, data []byte) error {
	return &OptionError{Option: optName(opt), Reply: typ, Message: cleanMessage(data)}
}

// structuredReplies asks for structured replies; false if the server
// declines.
func (n *negotiation) structuredReplies() (bool, error) {
	if err := n.sendOpt(optStructuredReply, nil); err != nil {
		return false, err
	}
	typ, data, err := n.reply(optStructuredReply)
	switch {
	case err != nil:
		return false, err
	case typ == repAck:
		if len(data) != 0 {
			return false, protoErr("NBD_REP_ACK with %d bytes of data", len(data))
		}
		return true, nil
	case typ&repErrBit != 0:
		return false, nil
	}
	return false, protoErr("reply type %d to NBD_OPT_STRUCTURED_REPLY", typ)
}

// metaContext is a metadata context the server offered or selected.
type metaContext struct {
	id   uint32
	name string
}

// metaContexts sends NBD_OPT_SET_META_CONTEXT or NBD_OPT_LIST_META_CONTEXT
// and returns the contexts the server answered with.
func (n *negotiation) metaContexts(opt uint32, export string, queries []string) ([]metaContext, error) {
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint32(data, uint32(len(queries)))
	for _, q := range queries {
		data = binary.BigEndian.AppendUint32(data, uint32(len(q)))
		data = append(data, q...)
	}
	if err := n.sendOpt(opt, data); err != nil {
		return nil, err
	}
	var got []metaContext
	ids := map[uint32]bool{}
	for {
		typ, data, err := n.reply(opt)
		switch {
		case err != nil:
			return nil, err
		case typ == repAck:
			return got, nil
		case typ == repMetaContext:
			if len(data) < 5 || len(data) > 4+maxString {
				return nil, protoErr("metadata context reply of %d bytes", len(data))
			}
			if len(got) >= 1024 {
				return nil, protoErr("more than 1024 metadata contexts")
			}
			id := binary.BigEndian.Uint32(data)
			if ids[id] && opt == optSetMetaContext {
				return nil, protoErr("metadata context id %d given twice", id)
			}
			ids[id] = true
			got = append(got, metaContext{id, string(data[4:])})
		case typ&repErrBit != 0:
			return nil, optError(opt, typ, data)
		default:
			return nil, protoErr("reply type %d to %s", typ, optName(opt))
		}
	}
}

// info sends NBD_OPT_GO or NBD_OPT_INFO for export, asking for block
// sizes, and returns what the server announced.
func (n *negotiation) info(opt uint32, export string) (ExportInfo, error) {
	data := binary.BigEndian.AppendUint32(nil, uint32(len(export)))
	data = append(data, export...)
	data = binary.BigEndian.AppendUint16(data, 1)
	data = binary.BigEndian.AppendUint16(data, infoBlockSize)
	if err := n.sendOpt(opt, data); err != nil {
		return ExportInfo{}, err
	}
	info := ExportInfo{Name: export}
	var haveExport, haveBlock bool
	for {
		typ, data, err := n.reply(opt)
		if err != nil {
			return ExportInfo{}, err
		}
		switch {
		case typ == repAck:
			if !haveExport {
				return ExportInfo{}, protoErr("%s succeeded without NBD_INFO_EXPORT", optName(opt))
			}
			if !haveBlock {
				info.MinBlock, info.PreferredBlock, info.MaxBlock = 1, 4096, defaultMaxBlock
			}
			return info, nil
		case typ == repInfo:
			if len(data) < 2 {
				return ExportInfo{}, protoErr("NBD_REP_INFO of %d bytes", len(data))
			}
			switch binary.BigEndian.Uint16(data) {
			case infoExport:
				if len(data) != 12 {
					return ExportInfo{}, protoErr("NBD_INFO_EXPORT of %d bytes", len(data))
				}
				if err := setExport(&info, binary.BigEndian.Uint64(data[2:]), binary.BigEndian.Uint16(data[10:])); err != nil {
					return ExportInfo{}, err
				}
				haveExport = true
			case infoBlockSize:
				if len(data) != 14 {
					return ExportInfo{}, protoErr("NBD_INFO_BLOCK_SIZE of %d bytes", len(data))
				}
				if err := setBlockSizes(&info, data[2:]); err != nil {
					return ExportInfo{}, err
				}
				haveBlock = true
			}
		case typ == repErrUnknown:
			return ExportInfo{}, fmt.Errorf("nbd: the server has no export named %q: %w", export, optError(opt, typ, data))
		case typ&repErrBit != 0:
			return ExportInfo{}, optError(opt, typ, data)
		default:
			return ExportInfo{}, protoErr("reply type %d to %s", typ, optName(opt))
		}
	}
}

// exportName enters transmission the old way, for servers without
// NBD_OPT_GO.
func (n *negotiation) exportName(export string) (ExportInfo, error) {
	if err := n.sendOpt(optExportName, []byte(export)); err != nil {
		return ExportInfo{}, err
	}
	size := 10
	if !n.noZeroes {
		size += 124
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(n.rw, b); err != nil {
		return ExportInfo{}, fmt.Errorf("nbd: the server closed the connection on export %q (no such export?): %w", export, unexpectedEOF(err))
	}
	info := ExportInfo{Name: export, MinBlock: 1, PreferredBlock: 4096, MaxBlock: defaultMaxBlock}
	return info, setExport(&info, binary.BigEndian.Uint64(b), binary.BigEndian.Uint16(b[8:]))
}

func setExport(info *ExportInfo, size uint64, flags uint16) error {
	if size > math.MaxInt64 {
		return protoErr("export size %d", size)
	}
	if flags&FlagHasFlags == 0 {
		return protoErr("transmission flags %#x without NBD_FLAG_HAS_FLAGS", flags)
	}
	info.Size, info.Flags = int64(size), flags
	return nil
}

func setBlockSizes(info *ExportInfo, b []byte) error {
	minB := binary.BigEndian.Uint32(b[0:])
	pref := binary.BigEndian.Uint32(b[4:])
	maxB := binary.BigEndian.Uint32(b[8:])
	switch {
	case minB == 0 || minB > 64<<10 || bits.OnesCount32(minB) != 1:
		return protoErr("minimum block size %d", minB)
	case pref < minB || bits.OnesCount32(pref) != 1:
		return protoErr("preferred block size %d (minimum %d)", pref, minB)
	case maxB < minB || (maxB%minB != 0 && maxB != math.MaxUint32):
		return protoErr("maximum block size %d (minimum %d)", maxB, minB)
	}
	info.MinBlock, info.PreferredBlock, info.MaxBlock = minB, pref, maxB
	return nil
}

// abort ends option haggling politely.
func (n *negotiation) abort() {
	if n.sendOpt(optAbort, nil) == nil {
		n.reply(optAbort) //nolint:errcheck // the server may just hang up
	}
}

func optName(opt uint32) string {
	switch opt {
	case optExportName:
		return "NBD_OPT_EXPORT_NAME"
	case optAbort:
		return "NBD_OPT_ABORT"
	case optInfo:
		return "NBD_OPT_INFO"
	case optGo:
		return "NBD_OPT_GO"
	case optStructuredReply:
		return "NBD_OPT_STRUCTURED_REPLY"
	case optListMetaContext:
		return "NBD_OPT_LIST_META_CONTEXT"
	case optSetMetaContext:
		return "NBD_OPT_SET_META_CONTEXT"
	}
	return fmt.Sprintf("option %d", opt)
}
