package ntfs

import (
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// TestConcurrentWalks walks the seed from several goroutines at once
// (run with -race): every method is documented safe for concurrent use.
func TestConcurrentWalks(t *testing.T) {
	v := seedVolume(t)
	vol, err := Open(v, v.Size)
	if err != nil {
		t.Fatal(err)
	}
	if res := fstest.CheckConcurrentWalks(t, vol, 4, walkLimits); len(res.Read) != 48 || len(res.Errs) > 0 {
		t.Errorf("%d files and links, errors %v; want 48, no errors", len(res.Read), res.Errs)
	}
}
