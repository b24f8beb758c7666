package cli

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/ingest"
	"github.com/cairn-backup/cairn/ingest/openstack"
	"github.com/cairn-backup/cairn/repo"
)

func restoreVMCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "vm",
		Usage:     "recreate a backed-up server in OpenStack: its volumes, filled from the repository, then the server",
		ArgsUsage: "RESTORE-POINT",
		Description: "Creates one volume per disk (same size, type and bootable flag) and fills it without a proxy VM:\n" +
			"through a temporary Glance image streamed from the repository (default), or through a Cinder\n" +
			"attachment to this host (--transfer attach: RBD via the rbd tool, NFS when the share is mounted here).\n" +
			"Then boots the server from those volumes with the captured flavor (or one of the same size),\n" +
			"device layout, security groups, metadata, tags, key pair (recreated from the stored public key\n" +
			"when missing) and networks (the original ones, or --network). On its original network a port\n" +
			"keeps its captured MAC address (licences, DHCP reservations) unless --new-mac; such a port is\n" +
			"created by cairn, and Nova keeps ports it did not create when the server is deleted. Other\n" +
			"ports are created by Nova and deleted with the server (but when one network has port security\n" +
			"disabled and the server has security groups, Nova refuses the groups: cairn creates all ports\n" +
			"then, and says so in the plan). A security group the project lacks\n" +
			"(deleted, or another project) is recreated from its captured rules. Networks with port security\n" +
			"disabled get a port without security groups. Temporary images and attachments are always\n" +
			"deleted; on failure or Ctrl-C everything created is removed unless --keep-on-failure.\n\n" +
			"Restore points of local image files (`cairn backup --disk`) need --flavor and --network.\n\n" +
			"Examples:\n" +
			"  cairn restore vm 3f2a91c0 --os-cloud prod --name web1-restored\n" +
			"  cairn restore vm 3f2a91c0 --os-cloud prod --project dr --network dr-net=10.0.0.15 --dry-run",
		Flags: append(restoreCloudFlags(),
			&ucli.StringFlag{Name: "name", Usage: "server `NAME` (default: the original name; must be free in the project)"},
			&ucli.StringSliceFlag{Name: "network", Usage: "attach to `NET[=FIXED_IP]` (name or ID; repeat, in order); default: the original networks"},
			&ucli.BoolFlag{Name: "no-network", Usage: "boot without any network"},
			&ucli.BoolFlag{Name: "new-mac", Usage: "give the ports new MAC addresses even on the original networks (Nova then creates the ports where it can and deletes them with the server)"},
			&ucli.StringFlag{Name: "flavor", Usage: "flavor `NAME` or ID (default: the captured one, or one with the same vCPUs/RAM/disk)"},
			&ucli.StringSliceFlag{Name: "security-group", Usage: "security group `NAME` or ID (repeat); default: the captured ones"},
			&ucli.StringFlag{Name: "keypair", Usage: "existing key pair `NAME` (default: the captured one, recreated from its stored public key if needed)"},
			&ucli.StringFlag{Name: "availability-zone", Usage: "compute availability `ZONE`"},
			&ucli.StringFlag{Name: "volume-type", Usage: "volume `TYPE` for every volume (default: the captured types)"},
			&ucli.BoolFlag{Name: "power-on", Usage: "start the server even if it was shut off"},
			&ucli.BoolFlag{Name: "no-power-on", Usage: "leave the server shut off"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan and check names and quotas; create nothing"},
			&ucli.BoolFlag{Name: "keep-on-failure", Usage: "on failure keep what was created (temporaries are still removed)"},
			&ucli.StringFlag{Name: "transfer", Value: "glance", Usage: "how bytes reach the volumes: glance or attach"},
			&ucli.StringFlag{Name: "ceph-conf", Usage: "ceph.conf `FILE` (with keyring) for --transfer attach on RBD volumes"},
		),
		Action: runRestoreVM,
	}
}

func restoreVolumeCommand() *ucli.Command {
	return &ucli.Command{
		Name:      "volume",
		Usage:     "restore one disk of a restore point as a new Cinder volume",
		ArgsUsage: "RESTORE-POINT DISK",
		Description: "Creates a volume of the captured size and type (or --size, --volume-type), fills it like\n" +
			"`restore vm` does, and attaches it to --attach-to SERVER if given.\n\n" +
			"Example: cairn restore volume 3f2a91c0 vdb --os-cloud prod --attach-to web1",
		Flags: append(restoreCloudFlags(),
			&ucli.StringFlag{Name: "name", Usage: "volume `NAME` (default: VM-DISK-restored)"},
			&ucli.StringFlag{Name: "volume-type", Usage: "volume `TYPE`"},
			&ucli.IntFlag{Name: "size", Usage: "size in `GiB` (at least the disk's size)"},
			&ucli.StringFlag{Name: "attach-to", Usage: "attach the new volume to `SERVER` (name or ID)"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "print the plan and check quotas; create nothing"},
			&ucli.BoolFlag{Name: "keep-on-failure", Usage: "on failure keep the volume (temporaries are still removed)"},
			&ucli.StringFlag{Name: "transfer", Value: "glance", Usage: "how bytes reach the volume: glance or attach"},
			&ucli.StringFlag{Name: "ceph-conf", Usage: "ceph.conf `FILE` (with keyring) for --transfer attach on RBD volumes"},
		),
		Action: runRestoreVolume,
	}
}

// restoreCloudFlags select the cloud like every OpenStack tool: clouds.yaml
// (--os-cloud / OS_CLOUD) or OS_* variables; --project picks the target.
func restoreCloudFlags() []ucli.Flag {
	s := func(name, env, usage string) ucli.Flag {
		return &ucli.StringFlag{Name: name, EnvVars: []string{env}, Usage: usage}
	}
	return []ucli.Flag{
		s("os-cloud", "OS_CLOUD", "cloud `NAME` in clouds.yaml"),
		s("os-auth-url", "OS_AUTH_URL", "Keystone `URL`"),
		s("os-username", "OS_USERNAME", "user `NAME`"),
		s("os-password", "OS_PASSWORD", "`PASSWORD`"),
		s("os-project-name", "OS_PROJECT_NAME", "project `NAME` of the credentials"),
		s("os-project-id", "OS_PROJECT_ID", "project `ID` of the credentials"),
		s("os-user-domain-name", "OS_USER_DOMAIN_NAME", "user domain `NAME` (default Default)"),
		s("os-project-domain-name", "OS_PROJECT_DOMAIN_NAME", "project domain `NAME` (default Default)"),
		s("os-region-name", "OS_REGION_NAME", "`REGION`"),
		s("os-interface", "OS_INTERFACE", "endpoint `INTERFACE`: public, internal or admin"),
		s("os-cacert", "OS_CACERT", "CA certificates `FILE` (PEM)"),
		s("os-application-credential-id", "OS_APPLICATION_CREDENTIAL_ID", "application credential `ID`"),
		s("os-application-credential-secret", "OS_APPLICATION_CREDENTIAL_SECRET", "application credential `SECRET`"),
		&ucli.BoolFlag{Name: "insecure", Usage: "skip TLS certificate verification (knowingly)"},
		&ucli.StringFlag{Name: "project", Usage: "restore into project `P` (name or ID; the user needs a role there)"},
	}
}

var projectIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func restoreCloudConfig(c *ucli.Context) openstack.Config {
	cfg := openstack.Config{
		Cloud: c.String("os-cloud"), AuthURL: c.String("os-auth-url"), Username: c.String("os-username"),
		Password: c.String("os-password"), ProjectName: c.String("os-project-name"), ProjectID: c.String("os-project-id"),
		UserDomainName: c.String("os-user-domain-name"), ProjectDomainName: c.String("os-project-domain-name"),
		Region: c.String("os-region-name"), Interface: c.String("os-interface"), CACert: c.String("os-cacert"),
		AppCredentialID: c.String("os-application-credential-id"), AppCredentialSecret: c.String("os-application-credential-secret"),
		Insecure: c.Bool("insecure"),
	}
	if p := c.String("project"); p != "" {
		if projectIDPattern.MatchString(p) {
			cfg.ProjectID, cfg.ProjectName = p, ""
		} else {
			cfg.ProjectName, cfg.ProjectID = p, ""
		}
	}
	return cfg
}

func restoreNotes(c *ucli.Context) func(string) {
	if c.Bool("quiet") {
		return nil
	}
	w := c.App.ErrWriter
	return func(s string) { fmt.Fprintln(w, "restore: "+s) }
}

func runRestoreVM(c *ucli.Context) error {
	if c.NArg() != 1 {
		return usageErr("restore vm needs RESTORE-POINT (see `cairn list`)")
	}
	o := openstack.RestoreVMOptions{
		Name: c.String("name"), NoNetwork: c.Bool("no-network"), NewMAC: c.Bool("new-mac"), Flavor: c.String("flavor"),
		SecurityGroups: c.StringSlice("security-group"), Keypair: c.String("keypair"),
		AvailabilityZone: c.String("availability-zone"), VolumeType: c.String("volume-type"),
		DryRun: c.Bool("dry-run"), KeepOnFailure: c.Bool("keep-on-failure"),
		Transfer: c.String("transfer"), CephConf: c.String("ceph-conf"), Note: restoreNotes(c),
	}
	for _, n := range c.StringSlice("network") {
		nc, err := openstack.ParseNetworkChoice(n)
		if err != nil {
			return usageErr("%v", err)
		}
		o.Networks = append(o.Networks, nc)
	}
	if o.NoNetwork && len(o.Networks) > 0 {
		return usageErr("--no-network and --network exclude each other")
	}
	switch on, off := c.Bool("power-on"), c.Bool("no-power-on"); {
	case on && off:
		return usageErr("--power-on and --no-power-on exclude each other")
	case on || off:
		o.PowerOn = &on
	}
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		p, err := r.LoadPoint(c.Args().Get(0))
		if err != nil {
			return err
		}
		cl, err := openstack.Connect(c.Context, restoreCloudConfig(c))
		if err != nil {
			return err
		}
		prog := &ingest.Progress{}
		o.Progress = prog
		stop := func() {}
		if !o.DryRun {
			stop = showProgress(c, "restore", prog)
		}
		res, err := openstack.RestoreVM(c.Context, cl, r, p, o)
		stop()
		return printRestoreResult(c, res, err)
	})
}

func runRestoreVolume(c *ucli.Context) error {
	if c.NArg() != 2 {
		return usageErr("restore volume needs RESTORE-POINT and DISK (see `cairn list` and `cairn show`)")
	}
	o := openstack.RestoreVolumeOptions{
		Name: c.String("name"), VolumeType: c.String("volume-type"), SizeGB: c.Int("size"),
		AttachTo: c.String("attach-to"), DryRun: c.Bool("dry-run"), KeepOnFailure: c.Bool("keep-on-failure"),
		Transfer: c.String("transfer"), CephConf: c.String("ceph-conf"), Note: restoreNotes(c),
	}
	return withRepo(c, repo.Shared, func(r *repo.Repository) error {
		p, err := r.LoadPoint(c.Args().Get(0))
		if err != nil {
			return err
		}
		cl, err := openstack.Connect(c.Context, restoreCloudConfig(c))
		if err != nil {
			return err
		}
		prog := &ingest.Progress{}
		o.Progress = prog
		stop := func() {}
		if !o.DryRun {
			stop = showProgress(c, "restore", prog)
		}
		res, err := openstack.RestoreVolume(c.Context, cl, r, p, c.Args().Get(1), o)
		stop()
		return printRestoreResult(c, res, err)
	})
}

// printRestoreResult prints the plan or what was created; with --json the
// whole result (also on failure, with "error" set) goes to stdout.
func printRestoreResult(c *ucli.Context, res *openstack.RestoreResult, err error) error {
	if c.Bool("json") && res != nil {
		out := struct {
			*openstack.RestoreResult
			Error string `json:"error,omitempty"`
		}{RestoreResult: res}
		if err != nil {
			out.Error = err.Error()
		}
		if perr := printJSON(c, out); perr != nil {
			return perr
		}
		return err
	}
	if res != nil && res.Plan != nil && (res.DryRun || err == nil) {
		writePlan(c.App.Writer, res)
	}
	if err != nil {
		return err
	}
	w := c.App.Writer
	if res.DryRun {
		fmt.Fprintln(w, "dry run: nothing was created")
		return nil
	}
	if res.Server != nil {
		fmt.Fprintf(w, "server %s (%s) is %s\n", res.Server.Name, res.Server.ID, res.Server.Status)
	}
	for _, v := range res.Volumes {
		fmt.Fprintf(w, "volume %s (%s) from disk %s, %d GiB\n", v.Name, v.ID, v.Disk, v.SizeGB)
	}
	for _, g := range res.Groups {
		fmt.Fprintf(w, "security group %s (%s) recreated with %d rules\n", g.Name, g.ID, g.Rules)
	}
	for _, p := range res.Ports {
		keep := "deleted with the server"
		if !p.DeletedWithServer {
			keep = "kept by Nova when the server is deleted"
		}
		fmt.Fprintf(w, "port %s on %s, MAC %s, %s (created by %s, %s)\n", p.ID, p.Network, p.MAC, strings.Join(p.IPs, ", "), p.CreatedBy, keep)
	}
	if res.Keypair != "" {
		fmt.Fprintf(w, "key pair %s recreated from the stored public key\n", res.Keypair)
	}
	fmt.Fprintf(w, "restored %s in %.1f s\n", res.Point[:8], res.Duration)
	return nil
}

func writePlan(w io.Writer, res *openstack.RestoreResult) {
	pl := res.Plan
	if w == nil {
		w = os.Stdout
	}
	if pl.Flavor.ID != "" {
		fmt.Fprintf(w, "server    %s in project %s, flavor %s (%s), power %s\n", pl.ServerName, pl.Project, pl.Flavor.Name, pl.Flavor.Why, map[bool]string{true: "on", false: "off"}[pl.PowerOn])
		fmt.Fprintf(w, "key pair  %s (%s)\n", orNone(pl.KeyName), pl.KeypairAction)
		var sgs []string
		for _, sg := range pl.SecurityGroups {
			if sg.Action == "create" {
				sgs = append(sgs, fmt.Sprintf("%s (recreated from %d captured rules: %s)", sg.Name, sg.Rules, sg.Why))
			} else {
				sgs = append(sgs, sg.Name)
			}
		}
		fmt.Fprintf(w, "groups    %s\n", orNone(strings.Join(sgs, ", ")))
		for _, n := range pl.Networks {
			extra := ""
			if n.FixedIP != "" {
				extra = " address " + n.FixedIP
			}
			if n.MAC != "" {
				extra += " MAC " + n.MAC
			}
			extra += "; port: " + n.PortWhy
			if !n.PortSecurity {
				extra += " (port security disabled: port without security groups)"
			}
			fmt.Fprintf(w, "network   %s%s\n", n.NetworkName, extra)
		}
	}
	for _, v := range pl.Volumes {
		boot := ""
		if v.BootIndex >= 0 {
			boot = fmt.Sprintf(", boot index %d", v.BootIndex)
		}
		fmt.Fprintf(w, "volume    %s <- disk %s, %d GiB, type %s%s\n", v.Name, v.Disk, v.SizeGB, orNone(v.VolumeType), boot)
	}
	for _, ch := range pl.Checks {
		fmt.Fprintf(w, "check     %s\n", ch)
	}
	for _, n := range pl.Warnings {
		fmt.Fprintf(w, "note      %s\n", n)
	}
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
