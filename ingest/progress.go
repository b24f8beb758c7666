package ingest

import (
	"sync/atomic"
	"time"
)

// Progress counts the work of a backup or restore while it runs. All
// fields are updated atomically and may be read at any time.
type Progress struct {
	Total     atomic.Int64 // logical bytes to process (sum of disk sizes)
	Done      atomic.Int64 // logical bytes processed, holes included
	Read      atomic.Int64 // bytes read from sources (or from the repository on restore)
	NewBytes  atomic.Int64 // uncompressed bytes of blocks the repository lacked
	Stored    atomic.Int64 // bytes added to packs
	Written   atomic.Int64 // bytes written to restore targets
	Disk      atomic.Value // string: disk being processed
	StartTime time.Time
}

// Snapshot is a plain copy of Progress for reporting.
type Snapshot struct {
	Disk                                         string
	Total, Done, Read, NewBytes, Stored, Written int64
	Elapsed                                      time.Duration
}

// Snapshot copies the counters.
func (p *Progress) Snapshot() Snapshot {
	disk, _ := p.Disk.Load().(string)
	return Snapshot{
		Disk: disk, Total: p.Total.Load(), Done: p.Done.Load(), Read: p.Read.Load(),
		NewBytes: p.NewBytes.Load(), Stored: p.Stored.Load(), Written: p.Written.Load(),
		Elapsed: time.Since(p.StartTime),
	}
}
