package ntfs

import (
	"sync"
	"testing"
)

// TestConcurrentWalks walks the seed from several goroutines at once
// (run with -race): every method is documented safe for concurrent use.
func TestConcurrentWalks(t *testing.T) {
	data := loadSeed(t)
	v := paddedVolume(data)
	vol, err := Open(v, v.size)
	if err != nil {
		t.Fatal(err)
	}
	_, want, err := exercise(t, data)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var walk func(ino uint64, p string)
			walk = func(ino uint64, p string) {
				ents, err := vol.ReadDir(ino)
				if err != nil {
					t.Error(err)
					return
				}
				for _, e := range ents {
					fi, err := vol.Stat(e.Ino)
					if err != nil {
						t.Error(err)
						return
					}
					if fi.IsDir() {
						walk(e.Ino, p+"/"+e.Name)
						continue
					}
					if fi.Mode&0o170000 == 0o120000 {
						continue
					}
					f, err := vol.Open(e.Ino)
					if err != nil {
						t.Error(err)
						return
					}
					b := make([]byte, f.Size())
					f.ReadAt(b, 0)
					if string(b) != want[p+"/"+e.Name] {
						t.Errorf("%s/%s differs under concurrency", p, e.Name)
					}
				}
			}
			walk(vol.Root(), "")
		}()
	}
	wg.Wait()
}
