package fat

import (
	"testing"

	"github.com/cairn-backup/cairn/guest/internal/fstest"
)

// TestConcurrentWalks walks every seed from several goroutines at once
// (run with -race) and checks they all read the same bytes.
func TestConcurrentWalks(t *testing.T) {
	for name, data := range fstest.Seeds(t, "*.img.gz") {
		v := layout.Image(data)
		vol, err := Open(v, v.Size)
		if err != nil {
			t.Fatal(err)
		}
		if res := fstest.CheckConcurrentWalks(t, vol, 4, walkLimits); res.Files != 6 || len(res.Errs) > 0 {
			t.Errorf("%s: %d files, errors %v; want 6 files, no errors", name, res.Files, res.Errs)
		}
	}
}
