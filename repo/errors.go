package repo

import "errors"

// Sentinel errors. Callers test with errors.Is; every error that reaches a
// user wraps one of these with the file, pack or restore point it concerns.
var (
	// ErrNotFound: the repository, a restore point, a disk or a blob does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored bytes failed authentication, decoding or their hash check.
	// Data that fails is never returned.
	ErrCorrupt = errors.New("corrupt data")
	// ErrLocked: another process holds a lock this operation needs.
	ErrLocked = errors.New("repository is locked")
	// ErrWrongPassword: no key file could be opened with the given password or key file.
	ErrWrongPassword = errors.New("wrong password or key file")
	// ErrExists: init found an existing repository.
	ErrExists = errors.New("already exists")
	// ErrFormat: the repository uses a format version this build cannot read.
	ErrFormat = errors.New("unsupported repository format")
)
