package passthrough

import (
	"errors"
	"fmt"

	"godm/hyp"
	"godm/hyp/hcall"
	"godm/hyp/xenabi"
)

// Toolstack is the toolstack side of passthrough, which libxl does
// after the device model added a function (tools/libs/light/libxl_pci.c,
// pci_add_dm_done): permissions for the function's resources and its
// assignment in the IOMMU. *domctl.Domctl implements it.
type Toolstack interface {
	IomemPermission(dom hyp.DomID, firstMFN, nr uint64, allow bool) error
	IoportPermission(dom hyp.DomID, firstPort, nr uint32, allow bool) error
	IRQPermission(dom hyp.DomID, pirq uint32, allow bool) error
	AssignDevice(dom hyp.DomID, sbdf, flags uint32) error
	DeassignDevice(dom hyp.DomID, sbdf uint32) error
}

// Grant does for a function what libxl does when no toolstack will: it
// allows dom the function's I/O memory and ports, maps its GSI to a PIRQ
// and allows that, and assigns the function to dom in the IOMMU (flags:
// 0, or domctl.RDMRelaxed). It returns the function that undoes all of
// it (in reverse order, going on past errors). On error, what was done is
// undone.
func Grant(ts Toolstack, x Xen, dom hyp.DomID, h *HostDevice, flags uint32) (_ func() error, err error) {
	var undo []func() error
	undoAll := func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		undo = nil
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, undoAll())
		}
	}()
	for i, r := range h.Resources {
		if r.Start == 0 || r.Size() == 0 {
			continue
		}
		if r.IO() {
			first, n := uint32(r.Start), uint32(r.Size())
			if err := ts.IoportPermission(dom, first, n, true); err != nil {
				return nil, fmt.Errorf("passthrough: granting %v's ports of resource %d: %w", h.Addr, i, err)
			}
			undo = append(undo, func() error { return ts.IoportPermission(dom, first, n, false) })
			continue
		}
		mfn, n := r.Start/pageSize, (r.Size()+pageSize-1)/pageSize
		if err := ts.IomemPermission(dom, mfn, n, true); err != nil {
			return nil, fmt.Errorf("passthrough: granting %v's memory of resource %d: %w", h.Addr, i, err)
		}
		undo = append(undo, func() error { return ts.IomemPermission(dom, mfn, n, false) })
	}
	if h.GSI > 0 {
		pirq, err := x.MapPIRQ(dom, hcall.MapPIRQRequest{Type: xenabi.MAP_PIRQ_TYPE_GSI, Index: int32(h.GSI), PIRQ: int32(h.GSI)})
		if err != nil {
			return nil, fmt.Errorf("passthrough: mapping %v's GSI %d: %w", h.Addr, h.GSI, err)
		}
		undo = append(undo, func() error { return x.UnmapPIRQ(dom, pirq) })
		if err := ts.IRQPermission(dom, uint32(pirq), true); err != nil {
			return nil, fmt.Errorf("passthrough: granting %v's pirq %d: %w", h.Addr, pirq, err)
		}
		undo = append(undo, func() error { return ts.IRQPermission(dom, uint32(pirq), false) })
	}
	sbdf := uint32(h.Addr)
	if err := ts.AssignDevice(dom, sbdf, flags); err != nil {
		return nil, fmt.Errorf("passthrough: assigning %v to %v in the IOMMU: %w", h.Addr, dom, err)
	}
	undo = append(undo, func() error { return ts.DeassignDevice(dom, sbdf) })
	return undoAll, nil
}
