package machine

import (
	"godm/memory"
	"godm/memory/layout"
)

// Layout returns where the guest's RAM lies: MemBytes around the PCI hole
// that starts at MaxRAMBelow4G (zero: Xen's default, 0xF0000000), as Xen's
// toolstack populates it (memory/layout). MemBytes zero (not told) gives
// the zero Layout.
func (s Spec) Layout() (layout.Layout, error) {
	return layout.New(s.MemBytes, s.MaxRAMBelow4G)
}

// newDirtyLog sizes a switched-off dirty log for the RAM of lay: one bit
// per page up to the end of its highest range (32 KiB per GiB; the PCI
// hole below 4 GiB costs at most 128 KiB). The zero Layout gives nil.
func newDirtyLog(lay layout.Layout) (*memory.DirtyLog, error) {
	regions := lay.Regions()
	if len(regions) == 0 {
		return nil, nil
	}
	l, err := memory.NewDirtyLog(memory.GPA(regions[len(regions)-1].End()))
	if err != nil {
		return nil, err
	}
	l.SetEnabled(false)
	return l, nil
}
