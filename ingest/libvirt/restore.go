package libvirt

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	golibvirt "github.com/digitalocean/go-libvirt"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/repo"
)

// RestoreOptions configure restoring a restore point as a libvirt domain.
type RestoreOptions struct {
	Name     string // domain name; "" keeps the backed-up name
	PoolDir  string // directory for the disk images; "" puts each beside the original disk
	Format   string // "qcow2" (default) or "raw"
	Start    bool   // start the domain once defined
	Progress *ingest.Progress
}

// RestoreResult is what a restore did.
type RestoreResult struct {
	Domain  string                  `json:"domain"`
	UUID    string                  `json:"uuid"`
	NewID   bool                    `json:"new_identity"` // new UUID and MAC addresses
	Started bool                    `json:"started"`
	Disks   []ingest.RestoreSummary `json:"disks"`
}

// Restore writes the disks of p as image files and defines the domain
// again from its captured XML, with the disk paths rewritten. A new name
// gets a new UUID and new MAC addresses, so the copy can run beside the
// original. The disks are written on this machine, so the connection must
// be local (qemu:///system) or the pool directory shared with the
// hypervisor at the same path.
func (c *Conn) Restore(ctx context.Context, r *repo.Repository, p *repo.RestorePoint, o RestoreOptions) (*RestoreResult, error) {
	def, err := ParseDefinition(p.Definition)
	if err != nil {
		return nil, fmt.Errorf("restore point %s: %w", p.ID, err)
	}
	if o.Format == "" {
		o.Format = "qcow2"
	}
	if o.Format != "qcow2" && o.Format != "raw" {
		return nil, fmt.Errorf("format %q: use qcow2 or raw", o.Format)
	}
	if _, local := c.host.(localHost); !local && o.PoolDir == "" {
		return nil, fmt.Errorf("the disks are written on this machine and %s is remote: pass a --pool-dir that the hypervisor sees at the same path, or run the restore on the hypervisor", c.URI)
	}
	name := o.Name
	if name == "" {
		name = def.Name
	}
	if _, err := c.L.DomainLookupByName(name); err == nil {
		return nil, fmt.Errorf("a domain named %s exists on %s: restore under another name with --name, or undefine it first", name, c.URI)
	}
	res := &RestoreResult{Domain: name, NewID: name != def.Name}
	if !res.NewID && c.uuidInUse(def.UUID) {
		res.NewID = true // the original lives on under another name
	}
	paths := map[string]string{}
	for _, d := range p.Disks {
		dir := o.PoolDir
		if dir == "" {
			for _, dd := range def.Disks {
				if dd.Name == d.Name && dd.Path != "" {
					dir = filepath.Dir(dd.Path)
				}
			}
		}
		if dir == "" {
			return nil, fmt.Errorf("disk %s: no directory to restore it to: pass --pool-dir", d.Name)
		}
		paths[d.Name] = diskFileName(dir, name, d.Name, o.Format)
	}
	var written []string
	ok := false
	defer func() {
		if !ok {
			for _, w := range written {
				os.Remove(w)
			}
		}
	}()
	for _, d := range p.Disks {
		sum, err := ingest.RestoreDisk(ctx, r, p, d.Name, paths[d.Name], ingest.RestoreOptions{Format: o.Format, Progress: o.Progress})
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", d.Name, err)
		}
		written = append(written, paths[d.Name])
		res.Disks = append(res.Disks, sum)
	}
	x, err := redefine(def.XML, RedefineOptions{Name: name, NewIdent: res.NewID, Disks: paths, Format: o.Format})
	if err != nil {
		return nil, err
	}
	dom, err := c.L.DomainDefineXML(x)
	if err != nil {
		return nil, fmt.Errorf("define domain %s: %w", name, err)
	}
	res.UUID = uuidString(dom.UUID)
	ok = true
	if o.Start {
		if err := c.L.DomainCreate(dom); err != nil {
			return res, fmt.Errorf("domain %s is defined but did not start: %w", name, err)
		}
		res.Started = true
	}
	return res, nil
}

func (c *Conn) uuidInUse(s string) bool {
	raw, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(raw) != 16 {
		return false
	}
	var u golibvirt.UUID
	copy(u[:], raw)
	_, err = c.L.DomainLookupByUUID(u)
	return err == nil
}

// Domains lists the names of all domains (for --all).
func (c *Conn) Domains() ([]string, error) {
	doms, _, err := c.L.ConnectListAllDomains(1, 0)
	if err != nil {
		return nil, fmt.Errorf("list domains: %w", err)
	}
	var out []string
	for _, d := range doms {
		out = append(out, d.Name)
	}
	return out, nil
}
