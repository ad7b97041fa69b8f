package hcall

import (
	"encoding/binary"
	"fmt"

	"godm/hyp"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// Caller issues hypercalls through a privcmd handle.
type Caller struct {
	p *privcmd.Handle
}

// New returns a Caller using p. p stays owned by the caller and must
// outlive the Caller.
func New(p *privcmd.Handle) *Caller { return &Caller{p: p} }

// Privcmd returns the handle the Caller uses.
func (c *Caller) Privcmd() *privcmd.Handle { return c.p }

// Sizes of the argument structures (checked against the C headers by the
// layout test of hyp/xenabi).
const (
	sizeofMulticallEntry  = 64
	sizeofReservation     = 32
	sizeofAddToPhysmap    = 24
	sizeofHVMParam        = 16
	sizeofPhysdevMapPIRQ  = 40
	sizeofPhysdevUnmapPIQ = 8
)

// arena is one hypercall buffer carved into 8-byte aligned pieces.
type arena struct {
	buf  *privcmd.Buffer
	mem  []byte
	base uint64
	used int
}

// newArena allocates a hypercall buffer for pieces of the given sizes.
func (c *Caller) newArena(sizes ...int) (*arena, error) {
	total := 0
	for _, s := range sizes {
		total += (s + 7) &^ 7
	}
	if total == 0 {
		total = 8
	}
	b, err := c.p.Buffers().Alloc(total)
	if err != nil {
		return nil, err
	}
	return &arena{buf: b, mem: b.Bytes(), base: b.Addr()}, nil
}

// piece returns the next n bytes of the arena and their address.
func (a *arena) piece(n int) ([]byte, uint64) {
	off := a.used
	a.used += (n + 7) &^ 7
	return a.mem[off : off+n : off+n], a.base + uint64(off)
}

func (a *arena) free() { _ = a.buf.Free() }

// errno converts a hypercall result carried in a multicall entry (a
// negative errno as an unsigned long) into an error.
func errno(r uint64) error {
	if int64(r) < 0 {
		return unix.Errno(-int64(r))
	}
	return nil
}

// XenVersion returns the hypervisor's major and minor version
// (XENVER_version).
func (c *Caller) XenVersion() (major, minor int, err error) {
	r, err := c.p.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{xenabi.XENVER_version})
	if err != nil {
		return 0, 0, fmt.Errorf("hcall: xen_version: %w", err)
	}
	return int(r >> 16), int(r & 0xffff), nil
}

// XenExtraVersion returns the version suffix (XENVER_extraversion), e.g.
// ".7" for Xen 4.17.7.
func (c *Caller) XenExtraVersion() (string, error) {
	s, err := c.versionString(xenabi.XENVER_extraversion, xenabi.XenExtraversionLen)
	if err != nil {
		return "", fmt.Errorf("hcall: xen_version extraversion: %w", err)
	}
	return s, nil
}

// XenCapabilities returns the hypervisor's capability string
// (XENVER_capabilities), e.g. "xen-3.0-x86_64 hvm-3.0-x86_32 ...".
func (c *Caller) XenCapabilities() (string, error) {
	s, err := c.versionString(xenabi.XENVER_capabilities, xenabi.XenCapabilitiesLen)
	if err != nil {
		return "", fmt.Errorf("hcall: xen_version capabilities: %w", err)
	}
	return s, nil
}

// versionString issues xen_version sub-op cmd, whose answer is a
// NUL-terminated string in a buffer of n bytes.
func (c *Caller) versionString(cmd uint64, n int) (string, error) {
	a, err := c.newArena(n)
	if err != nil {
		return "", err
	}
	defer a.free()
	buf, addr := a.piece(n)
	if _, err := c.p.Hypercall(xenabi.HYPERVISOR_xen_version, [5]uint64{cmd, addr}); err != nil {
		return "", err
	}
	end := 0
	for end < len(buf) && buf[end] != 0 {
		end++
	}
	return string(buf[:end]), nil
}

// hvmParam issues HVMOP_get_param or HVMOP_set_param.
func (c *Caller) hvmParam(op uint64, dom hyp.DomID, param uint32, value uint64) (uint64, error) {
	a, err := c.newArena(sizeofHVMParam)
	if err != nil {
		return 0, err
	}
	defer a.free()
	p, addr := a.piece(sizeofHVMParam)
	binary.LittleEndian.PutUint16(p[0:], uint16(dom))
	binary.LittleEndian.PutUint32(p[4:], param)
	binary.LittleEndian.PutUint64(p[8:], value)
	if _, err := c.p.Hypercall(xenabi.HYPERVISOR_hvm_op, [5]uint64{op, addr}); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(p[8:]), nil
}

// GetHVMParam returns HVM parameter param (xenabi.HVM_PARAM_*) of dom.
func (c *Caller) GetHVMParam(dom hyp.DomID, param uint32) (uint64, error) {
	v, err := c.hvmParam(xenabi.HVMOP_get_param, dom, param, 0)
	if err != nil {
		return 0, fmt.Errorf("hcall: get HVM param %d of %v: %w", param, dom, err)
	}
	return v, nil
}

// SetHVMParam sets HVM parameter param (xenabi.HVM_PARAM_*) of dom.
func (c *Caller) SetHVMParam(dom hyp.DomID, param uint32, value uint64) error {
	if _, err := c.hvmParam(xenabi.HVMOP_set_param, dom, param, value); err != nil {
		return fmt.Errorf("hcall: set HVM param %d of %v: %w", param, dom, err)
	}
	return nil
}

// memoryOp issues memory_op cmd through a one-entry multicall, like
// libxenctrl's do_memory_op on Linux, with arg (the sub-op structure)
// already in the arena at argAddr. It returns the sub-op's result.
func (c *Caller) memoryOp(a *arena, cmd uint64, argAddr uint64) (uint64, error) {
	mc, mcAddr := a.piece(sizeofMulticallEntry)
	binary.LittleEndian.PutUint64(mc[0:], xenabi.HYPERVISOR_memory_op)
	binary.LittleEndian.PutUint64(mc[16:], cmd)
	binary.LittleEndian.PutUint64(mc[24:], argAddr)
	if _, err := c.p.Hypercall(xenabi.HYPERVISOR_multicall, [5]uint64{mcAddr, 1}); err != nil {
		return 0, err
	}
	r := binary.LittleEndian.Uint64(mc[8:])
	if err := errno(r); err != nil {
		return 0, err
	}
	return r, nil
}

// reservation issues a reservation memory_op (populate_physmap,
// decrease_reservation, increase_reservation) on gfns, copying the extent
// array back into gfns, and returns how many extents Xen handled.
func (c *Caller) reservation(cmd uint64, dom hyp.DomID, order, memFlags uint32, gfns []uint64) (int, error) {
	if len(gfns) == 0 {
		return 0, nil
	}
	a, err := c.newArena(sizeofMulticallEntry, sizeofReservation, 8*len(gfns))
	if err != nil {
		return 0, err
	}
	defer a.free()
	// Same order as libxenctrl's bounce buffers: reservation, extents, then
	// the multicall entry.
	r, rAddr := a.piece(sizeofReservation)
	ext, extAddr := a.piece(8 * len(gfns))
	for i, g := range gfns {
		binary.LittleEndian.PutUint64(ext[8*i:], g)
	}
	binary.LittleEndian.PutUint64(r[0:], extAddr)
	binary.LittleEndian.PutUint64(r[8:], uint64(len(gfns)))
	binary.LittleEndian.PutUint32(r[16:], order)
	binary.LittleEndian.PutUint32(r[20:], memFlags)
	binary.LittleEndian.PutUint16(r[24:], uint16(dom))
	done, err := c.memoryOp(a, cmd, rAddr)
	if err != nil {
		return 0, err
	}
	for i := range gfns {
		gfns[i] = binary.LittleEndian.Uint64(ext[8*i:])
	}
	return int(done), nil
}

// PopulatePhysmap allocates memory for dom at the guest frames gfns, in
// extents of 2^order pages (XENMEM_populate_physmap), with XENMEMF_* flags
// memFlags. On return gfns holds the frames Xen reports. Like
// xc_domain_populate_physmap_exact, it fails unless every extent was
// populated.
func (c *Caller) PopulatePhysmap(dom hyp.DomID, order, memFlags uint32, gfns []uint64) error {
	done, err := c.reservation(xenabi.XENMEM_populate_physmap, dom, order, memFlags, gfns)
	if err == nil && done != len(gfns) {
		err = fmt.Errorf("%d of %d extents populated: %w", done, len(gfns), unix.ENOMEM)
	}
	if err != nil {
		return fmt.Errorf("hcall: populate_physmap of %v: %w", dom, err)
	}
	return nil
}

// DecreaseReservation releases the extents of 2^order pages at gfns from
// dom (XENMEM_decrease_reservation). Like
// xc_domain_decrease_reservation_exact, it fails unless every extent was
// released.
func (c *Caller) DecreaseReservation(dom hyp.DomID, order uint32, gfns []uint64) error {
	done, err := c.reservation(xenabi.XENMEM_decrease_reservation, dom, order, 0, gfns)
	if err == nil && done != len(gfns) {
		err = fmt.Errorf("%d of %d extents released: %w", done, len(gfns), unix.EINVAL)
	}
	if err != nil {
		return fmt.Errorf("hcall: decrease_reservation of %v: %w", dom, err)
	}
	return nil
}

// AddToPhysmap maps idx of space (xenabi.XENMAPSPACE_*) at guest frame
// gpfn of dom (XENMEM_add_to_physmap).
func (c *Caller) AddToPhysmap(dom hyp.DomID, space uint32, idx, gpfn uint64) error {
	a, err := c.newArena(sizeofMulticallEntry, sizeofAddToPhysmap)
	if err != nil {
		return fmt.Errorf("hcall: add_to_physmap of %v: %w", dom, err)
	}
	defer a.free()
	p, addr := a.piece(sizeofAddToPhysmap)
	binary.LittleEndian.PutUint16(p[0:], uint16(dom))
	binary.LittleEndian.PutUint32(p[4:], space)
	binary.LittleEndian.PutUint64(p[8:], idx)
	binary.LittleEndian.PutUint64(p[16:], gpfn)
	if _, err := c.memoryOp(a, xenabi.XENMEM_add_to_physmap, addr); err != nil {
		return fmt.Errorf("hcall: add_to_physmap of %v: %w", dom, err)
	}
	return nil
}

// MapPIRQRequest is the input of PHYSDEVOP_map_pirq (struct
// physdev_map_pirq without the domain).
type MapPIRQRequest struct {
	Type      int32  // xenabi.MAP_PIRQ_TYPE_*
	Index     int32  // GSI, or MSI-X table index (-1 for MSI)
	PIRQ      int32  // wanted PIRQ, or -1 for any
	Bus       int32  // PCI bus; high 16 bits the segment for MSI_SEG/MULTI_MSI
	Devfn     int32  // PCI device<<3 | function
	EntryNr   int32  // MSI-X entry, or vector count for MULTI_MSI
	TableBase uint64 // MSI-X table base address
}

// MapPIRQ maps a physical interrupt of dom to a PIRQ (PHYSDEVOP_map_pirq)
// and returns the PIRQ Xen chose.
func (c *Caller) MapPIRQ(dom hyp.DomID, req MapPIRQRequest) (int, error) {
	a, err := c.newArena(sizeofPhysdevMapPIRQ)
	if err != nil {
		return 0, fmt.Errorf("hcall: map_pirq of %v: %w", dom, err)
	}
	defer a.free()
	p, addr := a.piece(sizeofPhysdevMapPIRQ)
	binary.LittleEndian.PutUint16(p[0:], uint16(dom))
	binary.LittleEndian.PutUint32(p[4:], uint32(req.Type))
	binary.LittleEndian.PutUint32(p[8:], uint32(req.Index))
	binary.LittleEndian.PutUint32(p[12:], uint32(req.PIRQ))
	binary.LittleEndian.PutUint32(p[16:], uint32(req.Bus))
	binary.LittleEndian.PutUint32(p[20:], uint32(req.Devfn))
	binary.LittleEndian.PutUint32(p[24:], uint32(req.EntryNr))
	binary.LittleEndian.PutUint64(p[32:], req.TableBase)
	if _, err := c.p.Hypercall(xenabi.HYPERVISOR_physdev_op, [5]uint64{xenabi.PHYSDEVOP_map_pirq, addr}); err != nil {
		return 0, fmt.Errorf("hcall: map_pirq of %v: %w", dom, err)
	}
	return int(int32(binary.LittleEndian.Uint32(p[12:]))), nil
}

// MapGSI maps GSI gsi of dom to a PIRQ, like xc_physdev_map_pirq: pirq < 0
// asks for the PIRQ numbered like the GSI.
func (c *Caller) MapGSI(dom hyp.DomID, gsi, pirq int) (int, error) {
	if pirq < 0 {
		pirq = gsi
	}
	return c.MapPIRQ(dom, MapPIRQRequest{Type: xenabi.MAP_PIRQ_TYPE_GSI, Index: int32(gsi), PIRQ: int32(pirq)})
}

// MapMSI maps an MSI (index -1) or MSI-X (index = table entry) of the PCI
// function bus:devfn for dom, like xc_physdev_map_pirq_msi; pirq < 0 lets
// Xen choose.
func (c *Caller) MapMSI(dom hyp.DomID, index, pirq, devfn, bus, entryNr int, tableBase uint64) (int, error) {
	return c.MapPIRQ(dom, MapPIRQRequest{Type: xenabi.MAP_PIRQ_TYPE_MSI, Index: int32(index), PIRQ: int32(pirq),
		Bus: int32(bus), Devfn: int32(devfn), EntryNr: int32(entryNr), TableBase: tableBase})
}

// UnmapPIRQ undoes MapPIRQ (PHYSDEVOP_unmap_pirq).
func (c *Caller) UnmapPIRQ(dom hyp.DomID, pirq int) error {
	a, err := c.newArena(sizeofPhysdevUnmapPIQ)
	if err != nil {
		return fmt.Errorf("hcall: unmap_pirq %d of %v: %w", pirq, dom, err)
	}
	defer a.free()
	p, addr := a.piece(sizeofPhysdevUnmapPIQ)
	binary.LittleEndian.PutUint16(p[0:], uint16(dom))
	binary.LittleEndian.PutUint32(p[4:], uint32(int32(pirq)))
	if _, err := c.p.Hypercall(xenabi.HYPERVISOR_physdev_op, [5]uint64{xenabi.PHYSDEVOP_unmap_pirq, addr}); err != nil {
		return fmt.Errorf("hcall: unmap_pirq %d of %v: %w", pirq, dom, err)
	}
	return nil
}

// Domctl issues one domctl: d is a whole struct xen_domctl in the layout
// of the running hypervisor's interface version (built by package
// hyp/domctl). Xen's answer is copied back into d.
func (c *Caller) Domctl(d []byte) error {
	if len(d) == 0 {
		return fmt.Errorf("hcall: domctl: empty structure: %w", unix.EINVAL)
	}
	a, err := c.newArena(len(d))
	if err != nil {
		return fmt.Errorf("hcall: domctl: %w", err)
	}
	defer a.free()
	p, addr := a.piece(len(d))
	copy(p, d)
	_, err = c.p.Hypercall(xenabi.HYPERVISOR_domctl, [5]uint64{addr})
	copy(d, p)
	if err != nil {
		return fmt.Errorf("hcall: domctl %d: %w", binary.LittleEndian.Uint32(d), err)
	}
	return nil
}
