package fat

import (
	"slices"
)

// checkOverlap reports a chain that uses a cluster twice, which only a
// loop or a cross-linked FAT can produce.
func checkOverlap(runs []run, what string) error {
	if len(runs) < 2 {
		return nil
	}
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b run) int {
		switch {
		case a.phys < b.phys:
			return -1
		case a.phys > b.phys:
			return 1
		}
		return 0
	})
	for i := 1; i < len(s); i++ {
		if uint64(s[i-1].phys)+uint64(s[i-1].n) > uint64(s[i].phys) {
			return malformed("%s: cluster chain visits cluster %d twice (loop)", what, s[i].phys)
		}
	}
	return nil
}

// findRun returns the index of the run holding logical cluster lc.
func findRun(runs []run, lc uint32) int {
	i, _ := slices.BinarySearchFunc(runs, lc, func(r run, lc uint32) int {
		switch {
		case lc < r.first:
			return 1
		case lc >= r.first+r.n:
			return -1
		}
		return 0
	})
	return i
}
