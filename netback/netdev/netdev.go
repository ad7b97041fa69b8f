// Package netdev opens a network back-end from a "-netdev" option (or a
// QMP netdev_add dictionary, through qemuopts.FromJSON): type=tap as
// libxl writes it, or type=user. It is the one place that knows every
// back-end; the wiring layer calls it, NIC models only see
// netback.Backend.
package netdev

import (
	"godm/internal/qemuopts"
	"godm/netback"
	"godm/netback/usernet"
)

// Netdev is an opened back-end and its id (what "-device ...,netdev=ID"
// names).
type Netdev struct {
	ID string
	netback.Backend
}

// Parse reads the argument of "-netdev" (its implied first key is type).
func Parse(arg string) (*qemuopts.Opts, error) {
	return qemuopts.Parse("-netdev", arg, "type")
}

// Open starts the back-end o describes. Every refusal is one line naming
// the option.
func Open(o *qemuopts.Opts) (*Netdev, error) {
	switch t := o.Label(); t {
	case "tap":
		c, err := netback.ParseTap(o)
		if err != nil {
			return nil, err
		}
		tap, err := netback.OpenTap(c)
		if err != nil {
			return nil, err
		}
		return &Netdev{ID: c.ID, Backend: tap}, nil
	case "user":
		c, err := usernet.Parse(o)
		if err != nil {
			return nil, err
		}
		u, err := usernet.New(c)
		if err != nil {
			return nil, err
		}
		return &Netdev{ID: c.ID, Backend: u}, nil
	case "":
		return nil, o.Errorf("parameter 'type' is missing")
	default:
		// QEMU's other types (bridge, socket, stream, dgram, vde,
		// l2tpv3, vhost-user, hubport...) are not what libxl writes.
		return nil, o.Errorf("netdev type '%s' is not supported (tap or user)", t)
	}
}
