package tree

import "testing"

// TestGuestInodeNumbers: guest inode numbers map to distinct tree inode
// numbers within a volume, the same in every tree, different between
// volumes, and never a number FUSE reserves.
func TestGuestInodeNumbers(t *testing.T) {
	a := &fsVol{seed: inode("guest", "p1", "vda", "p2")}
	a2 := &fsVol{seed: inode("guest", "p1", "vda", "p2")}
	b := &fsVol{seed: inode("guest", "p1", "vda", "p3")}
	seen := make(map[uint64]uint64, 1<<18)
	same := 0
	for n := uint64(1); n <= 1<<18; n++ {
		x := a.ino(n)
		if x <= RootIno || x == ^uint64(0) {
			t.Fatalf("guest inode %d: reserved number %d", n, x)
		}
		if m, dup := seen[x]; dup {
			t.Fatalf("guest inodes %d and %d share number %d", m, n, x)
		}
		seen[x] = n
		if a2.ino(n) != x {
			t.Fatalf("guest inode %d: %d in one tree, %d in another", n, x, a2.ino(n))
		}
		if b.ino(n) == x {
			same++
		}
	}
	if same > 0 {
		t.Errorf("%d guest inodes have the same number in two volumes", same)
	}
}
