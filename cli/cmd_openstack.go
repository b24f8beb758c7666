package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/ingest/openstack"
)

// openstackFlags are the connection flags of every OpenStack command;
// each also reads the OS_* variable python-openstackclient uses.
func openstackFlags() []ucli.Flag {
	s := func(name, env, usage string, more ...string) ucli.Flag {
		return &ucli.StringFlag{Name: name, EnvVars: append([]string{env}, more...), Usage: usage, Category: "OpenStack connection"}
	}
	return []ucli.Flag{
		s("os-cloud", "OS_CLOUD", "`NAME` of the cloud in clouds.yaml ($OS_CLIENT_CONFIG_FILE, ./, ~/.config/openstack/, /etc/openstack/)"),
		s("os-auth-url", "OS_AUTH_URL", "Keystone `URL`, e.g. https://keystone.example.com:5000/v3 or https://host:443/identity/v3"),
		s("os-username", "OS_USERNAME", "user `NAME`"),
		s("os-user-id", "OS_USER_ID", "user `ID`"),
		s("os-password", "OS_PASSWORD", "`PASSWORD` (prefer the variable or clouds.yaml/secure.yaml)"),
		s("os-user-domain-name", "OS_USER_DOMAIN_NAME", "user domain `NAME` (default Default)", "OS_DOMAIN_NAME"),
		s("os-user-domain-id", "OS_USER_DOMAIN_ID", "user domain `ID`", "OS_DOMAIN_ID"),
		s("os-project-name", "OS_PROJECT_NAME", "project `NAME` to scope to", "OS_TENANT_NAME"),
		s("os-project-id", "OS_PROJECT_ID", "project `ID` to scope to", "OS_TENANT_ID"),
		s("os-project-domain-name", "OS_PROJECT_DOMAIN_NAME", "project domain `NAME` (default Default)"),
		s("os-project-domain-id", "OS_PROJECT_DOMAIN_ID", "project domain `ID`"),
		s("os-system-scope", "OS_SYSTEM_SCOPE", "`all` for a system-scoped token (admins, cross-project)"),
		s("os-application-credential-id", "OS_APPLICATION_CREDENTIAL_ID", "application credential `ID`"),
		s("os-application-credential-name", "OS_APPLICATION_CREDENTIAL_NAME", "application credential `NAME`"),
		s("os-application-credential-secret", "OS_APPLICATION_CREDENTIAL_SECRET", "application credential `SECRET`"),
		s("os-region-name", "OS_REGION_NAME", "`REGION` of the endpoints to use"),
		s("os-interface", "OS_INTERFACE", "endpoint `INTERFACE`: public (default), internal or admin"),
		s("os-cacert", "OS_CACERT", "PEM `FILE` of the CA that signed the cloud's certificates"),
		&ucli.BoolFlag{Name: "insecure", Usage: "do not verify the cloud's TLS certificates (testing only)", Category: "OpenStack connection"},
	}
}

// selectionFlags pick servers (list and backup).
func selectionFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringSliceFlag{Name: "server", Usage: "server `NAME|ID` (repeat)", Category: "Selection"},
		&ucli.StringSliceFlag{Name: "tag", Usage: "servers carrying server tag `TAG` (repeat: all must match)", Category: "Selection"},
		&ucli.StringSliceFlag{Name: "metadata", Usage: "servers with metadata `KEY=VALUE` (repeat: all must match)", Category: "Selection"},
		&ucli.StringFlag{Name: "name-pattern", Usage: "servers whose name matches the `GLOB`, e.g. 'web-*'", Category: "Selection"},
		&ucli.StringFlag{Name: "project", Usage: "servers of project `ID` (admin)", Category: "Selection"},
		&ucli.BoolFlag{Name: "all-projects", Usage: "servers of all projects (admin)", Category: "Selection"},
	}
}

func osConfig(c *ucli.Context) openstack.Config {
	return openstack.Config{
		Cloud: c.String("os-cloud"), AuthURL: c.String("os-auth-url"),
		Username: c.String("os-username"), UserID: c.String("os-user-id"), Password: c.String("os-password"),
		UserDomainName: c.String("os-user-domain-name"), UserDomainID: c.String("os-user-domain-id"),
		ProjectName: c.String("os-project-name"), ProjectID: c.String("os-project-id"),
		ProjectDomainName: c.String("os-project-domain-name"), ProjectDomainID: c.String("os-project-domain-id"),
		SystemScope:     c.String("os-system-scope"),
		AppCredentialID: c.String("os-application-credential-id"), AppCredentialName: c.String("os-application-credential-name"),
		AppCredentialSecret: c.String("os-application-credential-secret"),
		Region:              c.String("os-region-name"), Interface: c.String("os-interface"),
		CACert: c.String("os-cacert"), Insecure: c.Bool("insecure"),
	}
}

func osConnect(c *ucli.Context) (*openstack.Cloud, error) {
	ctx, cancel := context.WithTimeout(c.Context, 2*time.Minute)
	defer cancel()
	return openstack.Connect(ctx, osConfig(c))
}

func osSelection(c *ucli.Context) (openstack.Selection, error) {
	sel := openstack.Selection{Servers: c.StringSlice("server"), Tags: c.StringSlice("tag"),
		NamePattern: c.String("name-pattern"), Project: c.String("project"), AllProjects: c.Bool("all-projects")}
	md, err := parsePairs(c.StringSlice("metadata"), "--metadata")
	if err != nil {
		return sel, err
	}
	if len(md) > 0 {
		sel.Metadata = map[string]string{}
		for _, p := range md {
			sel.Metadata[p[0]] = p[1]
		}
	}
	return sel, nil
}

func openstackCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "openstack",
		Usage: "inspect an OpenStack cloud and clean up after interrupted backups",
		Description: "Connect with --os-cloud NAME (clouds.yaml) or the OS_* variables of an openrc file.\n" +
			"Back up with `cairn backup openstack`.",
		Subcommands: []*ucli.Command{
			{
				Name: "check", Usage: "validate the connection and show what the credentials can see and do",
				Flags: openstackFlags(), Action: runOpenstackCheck,
			},
			{
				Name: "list", Usage: "list servers and whether and how cairn can protect them",
				Flags: append(openstackFlags(), selectionFlags()...), Action: runOpenstackList,
			},
			{
				Name:  "cleanup",
				Usage: "delete temporary snapshots, volumes, images and attachments left by killed backups",
				Description: "Replays the journals of backup runs that died (their lock is free) and deletes\n" +
					"what they created, in dependency order. With --orphans it also deletes resources\n" +
					"named cairn-tmp-… and marked cairn_temporary whose run is not alive (lost journals).\n" +
					"A run of this host is alive while its journal (in DIR, or where its temporaries say) is locked.\n" +
					"A run of another host cannot be seen that way: it counts as alive while its temporaries'\n" +
					"newest heartbeat (refreshed every 10 minutes by the run; else their creation or update time)\n" +
					"is younger than --orphan-grace.",
				Flags: append(openstackFlags(),
					&ucli.StringFlag{Name: "journal-dir", EnvVars: []string{"CAIRN_JOURNAL_DIR"}, Usage: "`DIR` of the run journals (default ~/.local/state/cairn/openstack)"},
					&ucli.BoolFlag{Name: "orphans", Usage: "also delete marked temporaries without a journal"},
					&ucli.DurationFlag{Name: "orphan-grace", Value: openstack.DefaultOrphanGrace, Usage: "with --orphans: leave a run of another host alone until its last heartbeat is `AGE` old"}),
				Action: runOpenstackCleanup,
			},
		},
	}
}

func runOpenstackCheck(c *ucli.Context) error {
	cl, err := osConnect(c)
	if err != nil {
		return err
	}
	r := cl.Check(c.Context)
	if c.Bool("json") {
		if err := printJSON(c, r); err != nil {
			return err
		}
	} else {
		printCheck(c, r)
	}
	if len(r.Problems) > 0 {
		return fmt.Errorf("%s", strings.Join(r.Problems, "; "))
	}
	return nil
}

func printCheck(c *ucli.Context, r *openstack.CheckReport) {
	w := c.App.Writer
	scope := "project " + r.Project + " (" + r.ProjectID + ")"
	if r.System {
		scope = "system (all)"
	}
	fmt.Fprintf(w, "Keystone   %s (settings from %s)\nuser       %s (domain %s)\nscope      %s\nroles      %s\n",
		r.AuthURL, r.Source, r.User, r.UserDomain, scope, strings.Join(r.Roles, ", "))
	if r.Region != "" {
		fmt.Fprintf(w, "region     %s\n", r.Region)
	}
	fmt.Fprintf(w, "token      expires %s\n\nservices:\n", r.Expires.Format(time.RFC3339))
	for _, s := range r.Services {
		st := "ok"
		if !s.OK {
			st = "FAILED: " + s.Error
		}
		fmt.Fprintf(w, "  %-9s %-10s %s\n", s.Type, s.Name, st)
		if s.Used != "" {
			fmt.Fprintf(w, "            uses %s", s.Used)
			if s.Versions != "" {
				fmt.Fprintf(w, " (microversions %s)", s.Versions)
			}
			fmt.Fprintln(w)
		}
		for _, e := range s.Endpoints {
			fmt.Fprintf(w, "            endpoint %s\n", e)
		}
	}
	if len(r.Quota) > 0 {
		fmt.Fprintf(w, "\nvolume quota of the project:\n")
		for _, k := range []string{"snapshots", "volumes", "gigabytes"} {
			fmt.Fprintf(w, "  %-10s %s\n", k, r.Quota[k])
		}
	}
	fmt.Fprintf(w, "\ncairn can:\n")
	for _, s := range r.Can {
		fmt.Fprintf(w, "  + %s\n", s)
	}
	for _, s := range r.Cannot {
		fmt.Fprintf(w, "  - cannot %s\n", s)
	}
}

func runOpenstackList(c *ucli.Context) error {
	sel, err := osSelection(c)
	if err != nil {
		return err
	}
	cl, err := osConnect(c)
	if err != nil {
		return err
	}
	servers, err := cl.ListServers(c.Context, sel)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if servers == nil {
			servers = []*openstack.Server{}
		}
		return printJSON(c, servers)
	}
	w := table(c.App.Writer)
	fmt.Fprintln(w, "NAME\tID\tSTATUS\tROOT\tVOLUMES\tGUEST AGENT\tQUIESCE\tPROTECTABLE")
	for _, s := range servers {
		root := "image"
		if s.BootFromVolume {
			root = "volume"
		}
		var vols []string
		for _, v := range s.Volumes {
			vols = append(vols, fmt.Sprintf("%s:%dG", strings.TrimPrefix(v.Device, "/dev/"), v.Size))
		}
		prot := "yes"
		if !s.Protectable() {
			prot = "NO"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\t%v\t%s\n", s.Name, s.ID, s.Status, root, strings.Join(vols, ","),
			yesNo(s.Quiesce.GuestAgent), yesNo(s.Quiesce.Requested), prot)
	}
	w.Flush()
	for _, s := range servers {
		for _, p := range s.Problems {
			fmt.Fprintf(c.App.Writer, "%s: cannot protect: %s\n", s.Name, p)
		}
		for _, p := range s.Warnings {
			fmt.Fprintf(c.App.Writer, "%s: note: %s\n", s.Name, p)
		}
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func runOpenstackCleanup(c *ucli.Context) error {
	cl, err := osConnect(c)
	if err != nil {
		return err
	}
	dir := c.String("journal-dir")
	if dir == "" {
		dir = openstack.DefaultJournalDir()
	}
	to := openstack.DefaultTimeouts
	rep, err := cl.Cleanup(c.Context, dir, to)
	if err == nil && c.Bool("orphans") {
		var orep openstack.CleanupReport
		orep, err = cl.CleanupOrphans(c.Context, dir, to, c.Duration("orphan-grace"))
		rep.Orphans, rep.Deleted, rep.Left = orep.Orphans, rep.Deleted+orep.Deleted, append(rep.Left, orep.Left...)
		rep.Remote, rep.Grace = orep.Remote, orep.Grace
	}
	if c.Bool("json") {
		if perr := printJSON(c, rep); perr != nil {
			return perr
		}
	} else {
		fmt.Fprintf(c.App.Writer, "replayed %d journals of dead runs in %s; deleted %d temporaries", rep.Journals, dir, rep.Deleted)
		if c.Bool("orphans") {
			fmt.Fprintf(c.App.Writer, " (%d orphans found)", rep.Orphans)
		}
		fmt.Fprintln(c.App.Writer)
		for _, t := range rep.Left {
			fmt.Fprintf(c.App.Writer, "left: %s %s %s\n", t.Kind, t.Name, t.ID)
		}
		for _, r := range rep.Remote {
			host := r.Host
			if host == "" {
				host = "an unknown host"
			}
			fmt.Fprintf(c.App.Writer, "left alone: %d temporaries of run %s on %s, alive %s ago (within the grace of %s, --orphan-grace)\n",
				r.Temporaries, r.Run, host, time.Since(r.LastSeen).Round(time.Second), rep.Grace)
		}
		for _, s := range rep.Skipped {
			fmt.Fprintf(c.App.Writer, "skipped (another cloud): %s\n", s)
		}
	}
	if err != nil {
		return fmt.Errorf("cleanup incomplete: %w", err)
	}
	return nil
}
