package nbd

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrClosed is returned by operations on a closed client.
var ErrClosed = errors.New("nbd: client closed")

// ErrProtocol marks a server that broke the protocol: a reply the client
// cannot trust. The connection is dropped when it happens.
var ErrProtocol = errors.New("nbd: protocol violation by the server")

// ErrNoMetaContext is returned by BlockStatus for a metadata context the
// server did not agree to during the handshake.
var ErrNoMetaContext = errors.New("nbd: metadata context not negotiated")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// ServerError is an error the server reported for one request. The
// connection stays usable.
type ServerError struct {
	Op        string // "read" or "block status"
	Errno     uint32 // NBD error value (EIO 5, EINVAL 22, ...)
	Message   string // the server's human-readable message, if any
	Offset    uint64 // where the error happened, if HasOffset
	HasOffset bool
}

var errnoNames = map[uint32]string{
	1: "EPERM", 5: "EIO", 12: "ENOMEM", 22: "EINVAL", 28: "ENOSPC",
	75: "EOVERFLOW", 95: "ENOTSUP", 108: "ESHUTDOWN",
}

func (e *ServerError) Error() string {
	name := errnoNames[e.Errno]
	if name == "" {
		name = "error"
	}
	s := fmt.Sprintf("nbd: server failed %s: %s (%d)", e.Op, name, e.Errno)
	if e.HasOffset {
		s += fmt.Sprintf(" at offset %d", e.Offset)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap lets errors.Is(err, syscall.EIO) and friends match; NBD error
// values are Linux errno values.
func (e *ServerError) Unwrap() error { return syscall.Errno(e.Errno) }

// OptionError is a handshake option the server refused.
type OptionError struct {
	Option  string // e.g. "NBD_OPT_GO"
	Reply   uint32 // NBD_REP_ERR_* value
	Message string
}

var repErrNames = map[uint32]string{
	repErrUnsup: "unsupported", repErrPolicy: "forbidden by server policy",
	repErrInvalid: "invalid", repErrPlatform: "unsupported on this platform",
	repErrTLSReqd: "TLS required", repErrUnknown: "unknown export",
	repErrShutdown: "server shutting down", repErrBlockSizeReq: "block size required",
	repErrTooBig: "too big",
}

func (e *OptionError) Error() string {
	name := repErrNames[e.Reply]
	if name == "" {
		name = fmt.Sprintf("error %#x", e.Reply)
	}
	s := fmt.Sprintf("nbd: server refused %s: %s", e.Option, name)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}
