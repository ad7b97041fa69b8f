// Command godm is a device model for Xen HVM guests: an ioreq server that
// emulates the devices of an HVM domain, routes their interrupts and passes
// PCI devices through.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "godm:", err)
		os.Exit(1)
	}
}
