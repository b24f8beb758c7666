package cli

import (
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// interspersed moves flags given after positional arguments in front of
// them, so that `cairn restore disk RP vda --to out.raw` works: urfave/cli
// stops parsing flags at the first positional argument.
func interspersed(app *ucli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	cmds := app.Commands
	var leaf *ucli.Command
	i := 1
	for ; i < len(args); i++ { // the command path
		var next *ucli.Command
		for _, c := range cmds {
			if c.HasName(args[i]) {
				next = c
			}
		}
		if next == nil {
			break
		}
		leaf = next
		out = append(out, args[i])
		cmds = next.Subcommands
	}
	if leaf == nil {
		return args
	}
	var flags, positional []string
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			positional = append(positional, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if takesValue(leaf, name) && i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	out = append(out, flags...)
	return append(out, positional...)
}

func takesValue(c *ucli.Command, name string) bool {
	for _, f := range c.Flags {
		for _, n := range f.Names() {
			if n == name {
				if _, isBool := f.(*ucli.BoolFlag); isBool {
					return false
				}
				return true
			}
		}
	}
	return false
}
