// Command godm-usernet is godm's user-mode networking (-netdev user,...)
// in a process of its own: godm starts it with the -netdev argument and a
// packet socket as descriptor 3 (netback/userproc), so that the device
// model links none of gVisor's netstack. Not meant to be run by hand.
package main

import (
	"fmt"
	"os"

	"godm/internal/qemuopts"
	"godm/netback"
	"godm/netback/usernet"
	"godm/netback/userproc"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: %s NETDEV-OPTIONS (started by godm with a packet socket as descriptor 3)\n", os.Args[0])
		os.Exit(2)
	}
	be, err := open(os.Args[1])
	if err := userproc.Serve(3, be, err); err != nil {
		fmt.Fprintf(os.Stderr, "godm-usernet: %v\n", err)
		os.Exit(1)
	}
}

func open(arg string) (netback.Backend, error) {
	o, err := qemuopts.Parse("-netdev", arg, "type")
	if err != nil {
		return nil, err
	}
	c, err := usernet.Parse(o)
	if err != nil {
		return nil, err
	}
	return usernet.New(c)
}
