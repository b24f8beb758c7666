package fat

import (
	"maps"
	"sync"
	"testing"
)

// TestConcurrentWalks walks every seed from several goroutines at once
// (run with -race) and checks they all read the same bytes.
func TestConcurrentWalks(t *testing.T) {
	for name, data := range loadSeeds(t) {
		v := paddedVolume(data)
		vol, err := Open(v, v.size)
		if err != nil {
			t.Fatal(err)
		}
		results := make([]map[string]string, 4)
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out := map[string]string{}
				var walk func(ino uint64, p string)
				walk = func(ino uint64, p string) {
					ents, err := vol.ReadDir(ino)
					if err != nil {
						t.Error(err)
						return
					}
					for _, e := range ents {
						if fi, err := vol.Stat(e.Ino); err != nil || fi.IsDir() {
							walk(e.Ino, p+"/"+e.Name)
							continue
						}
						f, err := vol.Open(e.Ino)
						if err != nil {
							t.Error(err)
							return
						}
						b := make([]byte, f.Size())
						f.ReadAt(b, 0)
						out[p+"/"+e.Name] = sha(b)
					}
				}
				walk(vol.Root(), "")
				results[i] = out
			}()
		}
		wg.Wait()
		for i := 1; i < len(results); i++ {
			if len(results[0]) != 6 || !maps.Equal(results[0], results[i]) {
				t.Errorf("%s: walks disagree: %v vs %v", name, results[0], results[i])
			}
		}
	}
}
