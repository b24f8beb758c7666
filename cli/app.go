package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/cairn-backup/cairn/repo"
)

// Version is set at build time with -ldflags "-X .../cli.Version=...".
var Version = "dev"

// App returns the cairn command-line application.
func App() *ucli.App {
	return &ucli.App{
		Name:    "cairn",
		Usage:   "agentless, deduplicating backup of OpenStack and KVM virtual machines",
		Version: Version,
		Description: "cairn stores VM disks in a deduplicated, compressed, optionally encrypted repository.\n" +
			"Start with `cairn init --repo DIR`, then `cairn backup --vm NAME --disk vda=IMAGE`.",
		Commands: withCommonFlags([]*ucli.Command{
			initCommand(), backupCommand(), listCommand(), showCommand(), restoreCommand(),
			checkCommand(), forgetCommand(), pruneCommand(), repairCommand(),
			mountCommand(), umountCommand(), openstackCommand(),
		}),
		ExitErrHandler: func(*ucli.Context, error) {}, // Main prints and maps errors
		OnUsageError:   onUsageError,
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usageErr("unknown command %q (see `cairn --help`)", c.Args().First())
			}
			return ucli.ShowAppHelp(c)
		},
	}
}

// onUsageError makes urfave's own usage errors (an unknown flag, a flag
// value that does not parse) exit with exitUsage like cairn's.
func onUsageError(c *ucli.Context, err error, _ bool) error {
	what := "cairn"
	if c.Command != nil && c.Command.FullName() != "" {
		what += " " + c.Command.FullName()
	}
	return usageErr("%v (see `%s --help`)", err, what)
}

// Main runs the CLI and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("CAIRN_CPUPROFILE"); path != "" { // for performance work
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	if path := os.Getenv("CAIRN_TRACE"); path != "" { // execution trace: go tool trace -pprof=sync|syscall|sched
		if f, err := os.Create(path); err == nil {
			trace.Start(f)
			defer trace.Stop()
		}
	}
	app := App()
	app.Writer, app.ErrWriter = stdout, stderr
	err := app.RunContext(ctx, interspersed(app, args))
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "cairn: %v\n", err)
	return exitCode(err)
}

// Exit codes, one table for the whole CLI.
const (
	exitError       = 1
	exitUsage       = 2
	exitCheck       = 3 // check found damage
	exitNoRepo      = 10
	exitLocked      = 11
	exitBadKey      = 12
	exitInterrupted = 130
)

// errCheckFailed marks a check that ran but found problems.
var errCheckFailed = errors.New("check found errors")

func exitCode(err error) int {
	var ec ucli.ExitCoder
	switch {
	case errors.As(err, &ec):
		return ec.ExitCode()
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, errCheckFailed), errors.Is(err, repo.ErrCorrupt):
		return exitCheck
	case errors.Is(err, repo.ErrLocked):
		return exitLocked
	case errors.Is(err, repo.ErrWrongPassword):
		return exitBadKey
	case errors.Is(err, repo.ErrNotFound):
		return exitNoRepo
	case errors.Is(err, errUsage):
		return exitUsage
	case strings.HasPrefix(err.Error(), "Required flag"):
		// urfave reports missing required flags with an unexported type
		return exitUsage
	}
	return exitError
}

var errUsage = errors.New("usage")

func usageErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
}

// commonFlags are accepted by every command, after the command name
// (`cairn list --json`), like the repository location and credentials.
func commonFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "repo", Aliases: []string{"r"}, EnvVars: []string{"CAIRN_REPO"}, Usage: "repository directory"},
		&ucli.StringFlag{Name: "password-file", EnvVars: []string{"CAIRN_PASSWORD_FILE"}, Usage: "read the repository password from `FILE` (or set CAIRN_PASSWORD)"},
		&ucli.StringFlag{Name: "key-file", EnvVars: []string{"CAIRN_KEY_FILE"}, Usage: "unlock the repository with the secret in `FILE` instead of a password"},
		&ucli.BoolFlag{Name: "json", Usage: "print machine-readable JSON on stdout"},
		&ucli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no progress output"},
		&ucli.DurationFlag{Name: "lock-wait", Value: time.Minute, Usage: "how long to wait for a conflicting repository lock"},
	}
}

// withCommonFlags adds commonFlags to every command that runs an action.
func withCommonFlags(cmds []*ucli.Command) []*ucli.Command {
	for _, c := range cmds {
		if c.Action != nil {
			c.Flags = append(c.Flags, commonFlags()...)
		}
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
		withCommonFlags(c.Subcommands)
	}
	return cmds
}
