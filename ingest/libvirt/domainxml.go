package libvirt

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// disk is one disk of a domain that cairn backs up.
type disk struct {
	Target string // guest device, e.g. "vda": the disk's name in the restore point
	Path   string // file or block device on the hypervisor ("" for network disks)
	Format string // "qcow2", "raw", ...
}

// checkpointable reports whether the disk can carry a persistent dirty bitmap.
func (d disk) checkpointable() bool { return d.Format == "qcow2" }

// domainDisks lists the disks of a domain definition that hold data:
// device "disk" (not cdrom/floppy/lun), in definition order.
func domainDisks(dom *libvirtxml.Domain) ([]disk, error) {
	var out []disk
	if dom.Devices == nil {
		return nil, nil
	}
	for _, d := range dom.Devices.Disks {
		if d.Device != "" && d.Device != "disk" {
			continue
		}
		if d.Target == nil || d.Target.Dev == "" {
			return nil, fmt.Errorf("a disk of domain %s has no target device", dom.Name)
		}
		k := disk{Target: d.Target.Dev, Format: "raw"}
		if d.Driver != nil && d.Driver.Type != "" {
			k.Format = d.Driver.Type
		}
		if d.Source != nil {
			switch {
			case d.Source.File != nil:
				k.Path = d.Source.File.File
			case d.Source.Block != nil:
				k.Path = d.Source.Block.Dev
			}
		}
		out = append(out, k)
	}
	return out, nil
}

// Definition is what a restore point of a libvirt domain records about it
// (RestorePoint.Definition, shown as the VM definition in the mount).
type Definition struct {
	Type  string           `json:"type"` // "libvirt"
	Name  string           `json:"name"`
	UUID  string           `json:"uuid"`
	URI   string           `json:"uri"`
	Disks []DefinitionDisk `json:"disks"`
	XML   string           `json:"xml"` // the domain XML (inactive definition when there is one)
}

// DefinitionDisk maps a restore point disk to the domain's disk.
type DefinitionDisk struct {
	Name   string `json:"name"`
	Path   string `json:"path,omitempty"`
	Format string `json:"format"`
}

func marshalDefinition(d Definition) (json.RawMessage, error) {
	d.Type = "libvirt"
	return json.Marshal(d)
}

// ParseDefinition reads the libvirt definition of a restore point.
func ParseDefinition(raw json.RawMessage) (*Definition, error) {
	var d Definition
	if err := json.Unmarshal(raw, &d); err != nil || d.Type != "libvirt" || d.XML == "" {
		return nil, fmt.Errorf("the restore point holds no libvirt domain definition (was it made by `cairn backup libvirt`?)")
	}
	return &d, nil
}

// RedefineOptions say how a captured domain XML becomes a new domain.
type RedefineOptions struct {
	Name     string            // new name; "" keeps the old one
	NewIdent bool              // drop UUID and MAC addresses so libvirt makes new ones
	Disks    map[string]string // target dev -> restored image path
	Format   string            // "qcow2" or "raw"
}

// redefine rewrites a captured domain XML for restore: name, identity,
// disk paths and formats (backing chains removed: restored disks are
// complete images).
func redefine(xmlDesc string, o RedefineOptions) (string, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(xmlDesc); err != nil {
		return "", fmt.Errorf("captured domain XML: %w", err)
	}
	if o.Name != "" {
		dom.Name = o.Name
	}
	dom.ID = nil
	if o.NewIdent {
		dom.UUID = ""
		if dom.Devices != nil {
			for i := range dom.Devices.Interfaces {
				dom.Devices.Interfaces[i].MAC = nil
			}
		}
	}
	if dom.Devices != nil {
		for i := range dom.Devices.Disks {
			d := &dom.Devices.Disks[i]
			if d.Target == nil {
				continue
			}
			path, ok := o.Disks[d.Target.Dev]
			if !ok {
				continue
			}
			d.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path}}
			d.BackingStore = nil
			if d.Driver == nil {
				d.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu"}
			}
			d.Driver.Type = o.Format
		}
	}
	return dom.Marshal()
}

// diskFileName is the file a restored disk gets in a pool directory.
func diskFileName(dir, domain, target, format string) string {
	safe := strings.Map(func(r rune) rune {
		if r == '/' || r == 0 {
			return '_'
		}
		return r
	}, domain)
	return filepath.Join(dir, safe+"-"+target+"."+format)
}
