// Command cairn backs up OpenStack and KVM virtual machines.
package main

import (
	"os"

	"github.com/cairn-backup/cairn/cli"
)

func main() { os.Exit(cli.Main(os.Args, os.Stdout, os.Stderr)) }
