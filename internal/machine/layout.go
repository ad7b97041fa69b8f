package machine

import "godm/memory/layout"

// Layout returns where the guest's RAM lies: MemBytes around the PCI hole
// that starts at MaxRAMBelow4G (zero: Xen's default, 0xF0000000), as Xen's
// toolstack populates it (memory/layout). MemBytes zero (not told) gives
// the zero Layout.
func (s Spec) Layout() (layout.Layout, error) {
	return layout.New(s.MemBytes, s.MaxRAMBelow4G)
}
