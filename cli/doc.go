// Package cli is cairn's command line: flags, one library call per command,
// and output for people or, with --json, for programs. It holds no business
// logic. Errors map to exit codes in one table (exitCode): 1 general, 2
// usage, 3 damage found, 10 no repository or restore point, 11 locked,
// 12 wrong password, 130 interrupted.
package cli
