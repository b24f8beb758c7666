package ingest

import "runtime"

// StreamWindow is a read-ahead window for a source.Stream under Backup
// with the given block size and worker count (0: the default): room for
// four batches per worker, so that workers rarely wait for a slow one.
func StreamWindow(blockSize, workers int) int64 {
	if workers <= 0 {
		workers = 2 * runtime.GOMAXPROCS(0)
	}
	return int64(4*workers) * batchBlocks * int64(blockSize)
}
