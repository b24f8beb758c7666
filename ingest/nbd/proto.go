package nbd

// Wire constants of the NBD protocol (doc/proto.md of the NetworkBlockDevice
// project). Every number is big-endian on the wire.

const (
	magicInit      = 0x4e42444d41474943 // "NBDMAGIC"
	magicOpt       = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply  = 0x0003e889045565a9
	magicRequest   = 0x25609513
	magicSimple    = 0x67446698
	magicStructure = 0x668e33ef
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle = 1 << 0
	flagNoZeroes      = 1 << 1
)

// Option types.
const (
	optExportName      = 1
	optAbort           = 2
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
	optListMetaContext = 9
	optSetMetaContext  = 10
)

// Option reply types; errors have bit 31 set.
const (
	repAck         = 1
	repInfo        = 3
	repMetaContext = 4

	repErrBit          = 1 << 31
	repErrUnsup        = repErrBit + 1
	repErrPolicy       = repErrBit + 2
	repErrInvalid      = repErrBit + 3
	repErrPlatform     = repErrBit + 4
	repErrTLSReqd      = repErrBit + 5
	repErrUnknown      = repErrBit + 6
	repErrShutdown     = repErrBit + 7
	repErrBlockSizeReq = repErrBit + 8
	repErrTooBig       = repErrBit + 9
)

// Information types of NBD_REP_INFO.
const (
	infoExport    = 0
	infoBlockSize = 3
)

// Transmission flags of an export.
const (
	FlagHasFlags     = 1 << 0
	FlagReadOnly     = 1 << 1
	FlagSendFlush    = 1 << 2
	FlagSendFUA      = 1 << 3
	FlagRotational   = 1 << 4
	FlagSendTrim     = 1 << 5
	FlagSendDF       = 1 << 7
	FlagCanMultiConn = 1 << 8
)

// Commands and command flags.
const (
	cmdRead        = 0
	cmdDisc        = 2
	cmdBlockStatus = 7

	cmdFlagReqOne = 1 << 3
)

// Structured reply flags and chunk types.
const (
	replyFlagDone = 1 << 0

	chunkNone        = 0
	chunkOffsetData  = 1
	chunkOffsetHole  = 2
	chunkBlockStatus = 5
	chunkErrBit      = 1 << 15
	chunkError       = chunkErrBit + 1
	chunkErrorOffset = chunkErrBit + 2
)

// Status flags of the metadata contexts cairn uses.
const (
	// StateHole (base:allocation): the range is not allocated.
	StateHole = 1 << 0
	// StateZero (base:allocation): the range reads as zeros.
	StateZero = 1 << 1
	// StateDirty (qemu:dirty-bitmap:NAME): the range changed since the
	// bitmap was created.
	StateDirty = 1 << 0
)

// Names of well-known metadata contexts.
const (
	ContextAllocation      = "base:allocation"
	ContextAllocationDepth = "qemu:allocation-depth"
	contextDirtyPrefix     = "qemu:dirty-bitmap:"
)

// DirtyBitmapContext names the metadata context QEMU serves for a
// persistent dirty bitmap exported with the export (qemu-nbd -B NAME,
// libvirt's backup checkpoint).
func DirtyBitmapContext(bitmap string) string { return contextDirtyPrefix + bitmap }

// Limits the client enforces on what a server sends.
const (
	maxString          = 4096    // the protocol's limit on strings
	maxOptReply        = 1 << 16 // an option reply payload we accept
	maxErrorChunk      = 6 + maxString + 8
	defaultMaxBlock    = 32 << 20 // interoperable maximum request payload
	maxStatusLength    = 1 << 31  // the longest block-status query sent
	maxExtentsPerReply = 1 << 17  // extents kept from one reply; the rest is re-asked
	maxReadPieces      = 4096     // disjoint pieces one read reply may arrive in
)
