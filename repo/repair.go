package repo

import (
	"fmt"
	"os"
	"time"
)

// RepairIndex rebuilds the index from the pack trailers alone. The old
// index is moved aside first and removed only after the new one is
// complete. The caller holds the exclusive lock.
func (r *Repository) RepairIndex() (SyncReport, error) {
	dir := r.indexDir()
	old := fmt.Sprintf("%s.old-%d", dir, time.Now().Unix())
	if err := os.Rename(dir, old); err != nil && !os.IsNotExist(err) {
		return SyncReport{}, fmt.Errorf("move old index aside: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return SyncReport{}, err
	}
	ix, err := openIndex(dir, false)
	if err != nil {
		return SyncReport{}, err
	}
	rep, err := r.syncIndex(ix, nil)
	if cerr := ix.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("rebuild index (the old one is kept in %s): %w", old, err)
	}
	os.RemoveAll(old)
	return rep, nil
}
