// Package ptdriver adapts a passthrough.Manager to the board's
// xen-pci-passthrough driver (board.PCIPassthrough). It is a package of
// its own so that the board, and the machine built on it, do not import
// package passthrough (whose tests build whole machines).
package ptdriver

import (
	"godm/internal/board"
	"godm/passthrough"
)

// Adapter is a passthrough.Manager as a board.PCIPassthrough.
type Adapter struct{ M *passthrough.Manager }

var _ board.PCIPassthrough = Adapter{}

// Add implements board.PCIPassthrough.
func (a Adapter) Add(args map[string]any, requireAssigned bool) (board.PCIView, error) {
	spec, err := passthrough.DeviceSpecFromArgs(args)
	if err != nil {
		return nil, err
	}
	p, err := a.M.AddWith(spec, passthrough.AddOptions{RequireAssigned: requireAssigned})
	if err != nil {
		return nil, err
	}
	return p.Dev, nil
}

// Remove implements board.PCIPassthrough.
func (a Adapter) Remove(id string) error { return a.M.Remove(id) }
