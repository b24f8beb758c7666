package fstest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Required reports whether what a test needs from the machine (tools,
// root, a kernel driver) must be there: CI=true or CAIRN_REQUIRE_TOOLS=1.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("CAIRN_REQUIRE_TOOLS") == "1"
}

// Unavailable ends a test that cannot run here for the reason why: it
// fails the test when Required, and skips it otherwise.
func Unavailable(tb testing.TB, why string) {
	tb.Helper()
	if Required() {
		tb.Fatalf("%s; CI=true or CAIRN_REQUIRE_TOOLS=1 requires it", why)
	}
	tb.Skipf("skipping: %s; set CAIRN_REQUIRE_TOOLS=1 to turn this into a failure", why)
}

// RequireTools ends the test through Unavailable unless every named
// tool is on PATH; pkgs names the Debian packages that hold them.
func RequireTools(tb testing.TB, pkgs string, names ...string) {
	tb.Helper()
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		Unavailable(tb, strings.Join(missing, ", ")+" not installed (apt-get install "+pkgs+")")
	}
}

// RequireRoot ends the test through Unavailable unless it runs as root;
// what says what root is needed for.
func RequireRoot(tb testing.TB, what string) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Unavailable(tb, "not root, so no "+what)
	}
}

// Run runs a command and returns its combined output, failing the test
// with that output when the command fails.
func Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	return RunEnv(tb, nil, name, args...)
}

// RunEnv is Run with env added to the test's environment.
func RunEnv(tb testing.TB, env []string, name string, args ...string) string {
	tb.Helper()
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
