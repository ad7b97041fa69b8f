// Package netdev opens a network back-end from a "-netdev" option (or a
// QMP netdev_add dictionary, through qemuopts.FromJSON): type=tap as
// libxl writes it, or type=user through the opener the caller gives
// (Defaults.User). It is the one place that knows every back-end type;
// the wiring layer calls it, NIC models only see netback.Backend.
package netdev

import (
	"fmt"

	"godm/internal/qemuopts"
	"godm/netback"
	"godm/netback/antispoof"
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

// AntiSpoof is the back-end's anti-spoofing filter (a tap's with
// x-godm-antispoof on), nil otherwise. The NIC's wiring binds the guest's
// MAC to it.
func (n *Netdev) AntiSpoof() *antispoof.Filter {
	if a, ok := n.Backend.(interface{ AntiSpoof() *antispoof.Filter }); ok {
		return a.AntiSpoof()
	}
	return nil
}

// Defaults are host-wide settings a netdev's own keys override.
type Defaults struct {
	// AntiSpoof turns anti-spoofing on for every tap without an
	// x-godm-antispoof key (GODM_ANTISPOOF=1 in the environment libxl
	// gives the device model).
	AntiSpoof bool
	// User opens "-netdev user" (nil: refused). usernet.Open runs it in
	// this process; godm runs it in its child godm-usernet
	// (netback/userproc), so that this package links no netstack.
	User func(o *qemuopts.Opts) (netback.Backend, error)
}

// AntiSpoofEnv is the environment variable of Defaults.AntiSpoof.
const AntiSpoofEnv = "GODM_ANTISPOOF"

// DefaultsFromEnv reads the host-wide defaults from the environment; a
// value it cannot read is one error line.
func DefaultsFromEnv(getenv func(string) string) (Defaults, error) {
	var d Defaults
	switch v := getenv(AntiSpoofEnv); v {
	case "", "0", "off", "no":
	case "1", "on", "yes":
		d.AntiSpoof = true
	default:
		return d, fmt.Errorf("%s=%q: give 1 (on) or 0 (off)", AntiSpoofEnv, v)
	}
	return d, nil
}

// Open starts the back-end o describes with no host-wide defaults and no
// user-mode networking.
func Open(o *qemuopts.Opts) (*Netdev, error) { return OpenWith(o, Defaults{}) }

// OpenWith starts the back-end o describes. Every refusal is one line
// naming the option.
func OpenWith(o *qemuopts.Opts, d Defaults) (*Netdev, error) {
	switch t := o.Label(); t {
	case "tap":
		c, err := tapConfig(o, d)
		if err != nil {
			return nil, err
		}
		tap, err := netback.OpenTap(c)
		if err != nil {
			return nil, err
		}
		return &Netdev{ID: c.ID, Backend: tap}, nil
	case "user":
		if d.User == nil {
			return nil, o.Errorf("user-mode networking is not available here")
		}
		u, err := d.User(o)
		if err != nil {
			return nil, err
		}
		return &Netdev{ID: o.ID(), Backend: u}, nil
	case "":
		return nil, o.Errorf("parameter 'type' is missing")
	default:
		// QEMU's other types (bridge, socket, stream, dgram, vde,
		// l2tpv3, vhost-user, hubport...) are not what libxl writes.
		return nil, o.Errorf("netdev type '%s' is not supported (tap or user)", t)
	}
}

// tapConfig parses a tap netdev and applies the host-wide defaults its
// own keys leave open.
func tapConfig(o *qemuopts.Opts, d Defaults) (netback.TapConfig, error) {
	c, err := netback.ParseTap(o)
	if err == nil && !c.AntiSpoofSet {
		c.AntiSpoof = d.AntiSpoof
	}
	return c, err
}
