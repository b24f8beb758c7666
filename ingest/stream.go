package ingest

import "runtime"

// StreamWindow is the read-ahead window a source.Stream needs under Backup
// with the given block size and worker count (0: the default): workers
// take batches in disk order, so the bytes still to be read never lie
// further than one batch per worker beyond the lowest unread byte.
func StreamWindow(blockSize, workers int) int64 {
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	return int64(workers+1) * batchBlocks * int64(blockSize)
}
