// Package nbd is a client for the Network Block Device protocol, enough of
// it to back up a disk that QEMU, qemu-nbd or libvirt exports: read its
// bytes, ask which ranges are allocated, and ask which ranges a dirty
// bitmap marks as changed.
//
// # What it owns
//
// [Dial] connects over a unix socket or TCP and runs the fixed newstyle
// handshake: structured replies (NBD_OPT_STRUCTURED_REPLY), the metadata
// contexts the caller asks for (NBD_OPT_SET_META_CONTEXT: base:allocation,
// qemu:dirty-bitmap:NAME, qemu:allocation-depth) and NBD_OPT_GO with the
// export's size and block-size constraints (falling back to
// NBD_OPT_EXPORT_NAME on servers without it). [Query] asks about an export
// without opening it (NBD_OPT_INFO, NBD_OPT_LIST_META_CONTEXT).
//
// A [Client] is an [io.ReaderAt] over the export. Reads are split into
// requests no larger than the server's maximum block size, aligned to its
// minimum, and pipelined: many requests from one or many goroutines travel
// on the one connection at once (at most Options.MaxInFlight), and a single
// reader goroutine matches replies to requests by handle. Read data goes
// from the socket straight into the caller's buffer; holes the server
// reports (NBD_REPLY_TYPE_OFFSET_HOLE) are zeroed in place without
// crossing the wire. [Client.BlockStatus] asks for the extents of one
// metadata context ([Client.BlockStatusOne] for just the first, with
// NBD_CMD_FLAG_REQ_ONE); [Client.Extents] walks a whole range with it,
// however little the server answers per request.
//
// # Trust
//
// The server is not trusted. Every length and offset in a reply is checked
// against the request it answers before a byte is stored: chunks outside
// the request or overlapping an earlier one, a read reply that ends
// without describing every byte, extents that are empty or add up to more
// than was asked, unknown chunk types, a second final chunk, a reply to a
// handle not in flight: each is ErrProtocol and drops the connection, never
// a panic and never data. Allocation is bounded by what the client asked
// for, not by what the server claims. An error the server reports for one
// request (an error chunk, or an error in a simple reply) is a
// [*ServerError] naming the NBD error value (EIO, EINVAL, ...), its message
// and offset; the connection stays usable.
//
// # Time and cancellation
//
// A context ends the wait for a reply. A request that has not started to
// arrive is abandoned and its reply discarded when it comes; one whose data
// is already arriving into the caller's buffer can only be stopped by
// dropping the connection, which the client then does. Options.Timeout
// (default 2 minutes) fails the connection when the server sends nothing
// for that long while requests are outstanding, so a hung or killed server
// is an error, not a hang.
//
// # Not supported
//
// Writes, trim and flush (backups only read), TLS (exports are on the
// hypervisor's loopback or a unix socket), the oldstyle handshake, and
// 64-bit extended headers (NBD_OPT_EXTENDED_HEADERS): a block status
// request asks for at most 2 GiB, and [Client.Extents] loops.
package nbd
