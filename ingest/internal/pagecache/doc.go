// Package pagecache holds how ingest reads its sources with respect to the
// kernel's page cache: Sparing reads a disk image once, front to back, and
// leaves in the cache only what was there before.
package pagecache
