package main

import (
	"io"

	"godm/internal/qemuopts"
	"godm/netback"
	"godm/netback/userproc"
)

// openNetdev opens one -netdev as libxl writes it: a tap in this process,
// or user-mode networking in its child process godm-usernet
// (netback/userproc), so that godm itself links no netstack. Every
// refusal is one line naming the option.
func openNetdev(arg string, getenv func(string) string, childOut io.Writer) (netback.Backend, error) {
	o, err := qemuopts.Parse("-netdev", arg, "type")
	if err != nil {
		return nil, err
	}
	switch t := o.Label(); t {
	case "tap":
		c, err := netback.ParseTap(o)
		if err != nil {
			return nil, err
		}
		return netback.OpenTap(c)
	case "user":
		path, err := userproc.Find(getenv)
		if err != nil {
			return nil, o.Errorf("%v", err)
		}
		return userproc.Start(path, arg, o.ID(), childOut)
	case "":
		return nil, o.Errorf("parameter 'type' is missing")
	default:
		return nil, o.Errorf("netdev type '%s' is not supported (tap or user)", t)
	}
}
