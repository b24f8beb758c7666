package openstack

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

type novaFlavor struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	VCPUs     int    `json:"vcpus"`
	RAM       int    `json:"ram"`
	Disk      int    `json:"disk"`
	Ephemeral int    `json:"OS-FLV-EXT-DATA:ephemeral"`
	Swap      any    `json:"swap"` // "" or a number
	Disabled  bool   `json:"OS-FLV-DISABLED:disabled"`
}

// planFlavor picks --flavor, the captured flavor by name when it still has
// the same size, or else a flavor of the same vCPUs, RAM and disk.
func (rs *restorer) planFlavor(ctx context.Context, pl *RestorePlan) error {
	var body struct {
		Flavors []novaFlavor `json:"flavors"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "flavors/detail?is_public=None", &body); err != nil {
		return fmt.Errorf("list flavors: %s", apiMessage(err))
	}
	pick := func(f novaFlavor, why string) {
		pl.Flavor = PlannedFlavor{ID: f.ID, Name: f.Name, VCPUs: f.VCPUs, RAM: f.RAM, Disk: f.Disk, Why: why}
	}
	if want := rs.opts.Flavor; want != "" {
		for _, f := range body.Flavors {
			if f.ID == want || f.Name == want {
				pick(f, "--flavor")
				return nil
			}
		}
		return fmt.Errorf("--flavor %q: no such flavor visible to this project", want)
	}
	c := rs.def.Flavor
	same := func(f novaFlavor) bool {
		return f.VCPUs == c.VCPUs && f.RAM == c.RAM && f.Disk == c.Disk && f.Ephemeral == c.Ephemeral
	}
	for _, f := range body.Flavors {
		if f.Name == c.Name && same(f) && !f.Disabled {
			pick(f, "captured flavor")
			return nil
		}
	}
	for _, f := range body.Flavors {
		if same(f) && !f.Disabled {
			pick(f, fmt.Sprintf("captured flavor %q is gone or changed; %q has the same vCPUs, RAM and disk", c.Name, f.Name))
			pl.Warnings = append(pl.Warnings, "flavor: "+pl.Flavor.Why)
			return nil
		}
	}
	return fmt.Errorf("flavor %q (%d vCPU, %d MiB RAM, %d GB disk) no longer exists and no flavor has the same size: pass --flavor NAME", c.Name, c.VCPUs, c.RAM, c.Disk)
}

// planKeypair uses --keypair, the captured key pair when the restoring user
// has it with the same public key, or recreates it from the stored key.
func (rs *restorer) planKeypair(ctx context.Context, pl *RestorePlan) error {
	if rs.opts.Keypair != "" {
		if _, err := rs.getKeypair(ctx, rs.opts.Keypair); err != nil {
			return fmt.Errorf("--keypair %q: %s", rs.opts.Keypair, apiMessage(err))
		}
		pl.KeyName, pl.KeypairAction = rs.opts.Keypair, "use"
		return nil
	}
	pl.KeypairAction = "none"
	if rs.def == nil || rs.def.Keypair == nil || rs.def.Server.KeyName == "" {
		return nil
	}
	k := rs.def.Keypair
	if k.Missing || k.PublicKey == "" {
		have, err := rs.getKeypair(ctx, k.Name)
		if err == nil && have != nil {
			pl.KeyName, pl.KeypairAction = k.Name, "use"
			pl.Warnings = append(pl.Warnings, fmt.Sprintf("key pair %q was already gone at backup time; using the restoring user's key pair of that name", k.Name))
			return nil
		}
		pl.Warnings = append(pl.Warnings, fmt.Sprintf("key pair %q was gone at backup time and its public key is unknown: the server is created without a key pair (or pass --keypair)", k.Name))
		return nil
	}
	pl.publicKey, pl.keyType = k.PublicKey, k.Type
	for _, name := range []string{k.Name, k.Name + "-restored"} {
		have, err := rs.getKeypair(ctx, name)
		switch {
		case isNotFound(err):
			pl.KeyName, pl.KeypairAction = name, "create"
			if name != k.Name {
				pl.Warnings = append(pl.Warnings, fmt.Sprintf("the restoring user has a different key pair named %q; the stored public key is recreated as %q", k.Name, name))
			}
			return nil
		case err != nil:
			return fmt.Errorf("key pair %q: %s", name, apiMessage(err))
		case sameKey(have.PublicKey, k.PublicKey):
			pl.KeyName, pl.KeypairAction = name, "use"
			return nil
		}
	}
	return fmt.Errorf("key pairs %q and %q of the restoring user both hold other public keys: pass --keypair NAME", k.Name, k.Name+"-restored")
}

func sameKey(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	return len(fa) >= 2 && len(fb) >= 2 && fa[0] == fb[0] && fa[1] == fb[1]
}

func (rs *restorer) getKeypair(ctx context.Context, name string) (*KeypairDef, error) {
	var body struct {
		Keypair KeypairDef `json:"keypair"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "os-keypairs/"+url.PathEscape(name), &body); err != nil {
		return nil, err
	}
	return &body.Keypair, nil
}

// planAZ drops a captured availability zone the target cloud lacks.
func (rs *restorer) planAZ(ctx context.Context, pl *RestorePlan) error {
	if pl.AvailabilityZone == "" {
		return nil
	}
	var body struct {
		Zones []struct {
			Name  string `json:"zoneName"`
			State struct {
				Available bool `json:"available"`
			} `json:"zoneState"`
		} `json:"availabilityZoneInfo"`
	}
	if err := getJSON(ctx, rs.cloud.Compute, "os-availability-zone", &body); err != nil {
		return fmt.Errorf("list availability zones: %s", apiMessage(err))
	}
	for _, z := range body.Zones {
		if z.Name == pl.AvailabilityZone && z.State.Available {
			return nil
		}
	}
	if rs.opts.AvailabilityZone != "" {
		return fmt.Errorf("--availability-zone %q is not an available compute zone here", rs.opts.AvailabilityZone)
	}
	pl.Warnings = append(pl.Warnings, fmt.Sprintf("availability zone %q does not exist here; Nova picks one", pl.AvailabilityZone))
	pl.AvailabilityZone = ""
	return nil
}
