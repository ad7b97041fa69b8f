// Command godm is a device model for Xen HVM guests: an ioreq server that
// emulates the devices of an HVM domain and routes their interrupts.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// errUsage reports a usage error whose explanation was already printed.
var errUsage = errors.New("usage")

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "godm:", err)
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
}
