package guest

import (
	"github.com/cairn-backup/cairn/guest/ext"
	"github.com/cairn-backup/cairn/guest/fat"
	"github.com/cairn-backup/cairn/guest/ntfs"
	"github.com/cairn-backup/cairn/guest/xfs"
)

// builtin is the list Readers returns.
var builtin = []Reader{
	{Name: "ext", Probe: ext.Probe, Open: ext.Open},
	{Name: "xfs", Probe: xfs.Probe, Open: xfs.Open},
	{Name: "ntfs", Probe: ntfs.Probe, Open: ntfs.Open},
	{Name: "fat", Probe: fat.Probe, Open: fat.Open},
}
