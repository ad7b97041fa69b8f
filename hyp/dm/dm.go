package dm

import (
	"encoding/binary"
	"fmt"
	"sync"

	"godm/hyp"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// ServerID identifies an ioreq server of a domain (ioservid_t).
type ServerID uint16

// RangeKind is the kind of an I/O range claimed by an ioreq server.
type RangeKind uint32

// Range kinds; xen/include/public/hvm/dm_op.h.
const (
	PortRange   RangeKind = xenabi.XEN_DMOP_IO_RANGE_PORT
	MemoryRange RangeKind = xenabi.XEN_DMOP_IO_RANGE_MEMORY
	PCIRange    RangeKind = xenabi.XEN_DMOP_IO_RANGE_PCI
)

// String implements fmt.Stringer.
func (k RangeKind) String() string {
	switch k {
	case PortRange:
		return "port"
	case MemoryRange:
		return "memory"
	case PCIRange:
		return "pci"
	}
	return fmt.Sprintf("range-kind(%d)", uint32(k))
}

// ServerInfo is what XEN_DMOP_get_ioreq_server_info returns. The GFNs are
// zero when asked with noGFNs (map the pages as a resource instead).
type ServerInfo struct {
	BufIOReqPort uint32
	IOReqGFN     uint64
	BufIOReqGFN  uint64
}

// nslots is the number of preallocated argument blocks per Client.
const nslots = 4

type slot struct {
	mu   sync.Mutex
	call *privcmd.DMCall // guarded by mu
}

// Client issues DM ops for one domain.
type Client struct {
	p     *privcmd.Handle
	dom   hyp.DomID
	slots [nslots]slot
}

// New returns a Client issuing DM ops on dom through p.
func New(p *privcmd.Handle, dom hyp.DomID) *Client {
	c := &Client{p: p, dom: dom}
	for i := range c.slots {
		c.slots[i].call = privcmd.NewDMCall()
	}
	return c
}

// Dom returns the client's domain.
func (c *Client) Dom() hyp.DomID { return c.dom }

// acquire locks a free argument block (or waits for the first), resets it
// and encodes op.
func (c *Client) acquire(op uint32) *slot {
	var s *slot
	for i := range c.slots {
		if c.slots[i].mu.TryLock() {
			s = &c.slots[i]
			break
		}
	}
	if s == nil {
		s = &c.slots[0]
		s.mu.Lock()
	}
	s.call.Reset()
	binary.LittleEndian.PutUint32(s.call.Op[0:], op)
	return s
}

// do issues the block and releases it; read OUT fields with doOut instead.
func (c *Client) do(s *slot) error {
	err := c.p.Do(c.dom, s.call)
	s.call.SetExtra(nil)
	s.mu.Unlock()
	return err
}

// u returns the union part of the block's struct xen_dm_op.
func (s *slot) u() []byte { return s.call.Op[8:] }

func (c *Client) wrap(op string, err error) error {
	return fmt.Errorf("dm: %s %v: %w", op, c.dom, err)
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

var le = binary.LittleEndian

// CreateIOReqServer creates an ioreq server; handleBufIOReq is one of
// xenabi.HVM_IOREQSRV_BUFIOREQ_*.
func (c *Client) CreateIOReqServer(handleBufIOReq uint8) (ServerID, error) {
	s := c.acquire(xenabi.XEN_DMOP_create_ioreq_server)
	s.u()[0] = handleBufIOReq
	err := c.p.Do(c.dom, s.call)
	id := ServerID(le.Uint16(s.u()[4:]))
	s.mu.Unlock()
	if err != nil {
		return 0, c.wrap("create_ioreq_server", err)
	}
	return id, nil
}

// GetIOReqServerInfo returns the server's buffered-ioreq event channel and,
// unless noGFNs, the GFNs of its ioreq pages (the legacy mapping path).
func (c *Client) GetIOReqServerInfo(id ServerID, noGFNs bool) (ServerInfo, error) {
	s := c.acquire(xenabi.XEN_DMOP_get_ioreq_server_info)
	u := s.u()
	le.PutUint16(u[0:], uint16(id))
	if noGFNs {
		le.PutUint16(u[2:], xenabi.XEN_DMOP_no_gfns)
	}
	err := c.p.Do(c.dom, s.call)
	info := ServerInfo{
		BufIOReqPort: le.Uint32(u[4:]),
		IOReqGFN:     le.Uint64(u[8:]),
		BufIOReqGFN:  le.Uint64(u[16:]),
	}
	s.mu.Unlock()
	if err != nil {
		return ServerInfo{}, c.wrap("get_ioreq_server_info", err)
	}
	return info, nil
}

func (c *Client) ioRange(op uint32, name string, id ServerID, kind RangeKind, start, end uint64) error {
	if end < start {
		return c.wrap(name, fmt.Errorf("%v range [%#x, %#x]: %w", kind, start, end, unix.EINVAL))
	}
	s := c.acquire(op)
	u := s.u()
	le.PutUint16(u[0:], uint16(id))
	le.PutUint32(u[4:], uint32(kind))
	le.PutUint64(u[8:], start)
	le.PutUint64(u[16:], end)
	if err := c.do(s); err != nil {
		return c.wrap(name, fmt.Errorf("%v range [%#x, %#x]: %w", kind, start, end, err))
	}
	return nil
}

// MapIORange claims the inclusive range [start, end] of kind for server id.
func (c *Client) MapIORange(id ServerID, kind RangeKind, start, end uint64) error {
	return c.ioRange(xenabi.XEN_DMOP_map_io_range_to_ioreq_server, "map_io_range_to_ioreq_server", id, kind, start, end)
}

// UnmapIORange releases the inclusive range [start, end] of kind.
func (c *Client) UnmapIORange(id ServerID, kind RangeKind, start, end uint64) error {
	return c.ioRange(xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server, "unmap_io_range_from_ioreq_server", id, kind, start, end)
}

func (c *Client) pciDev(op uint32, name string, id ServerID, seg uint16, bus, dev, fn uint8) error {
	if dev > 0x1f || fn > 7 {
		return c.wrap(name, fmt.Errorf("pci %04x:%02x:%02x.%x: %w", seg, bus, dev, fn, unix.EINVAL))
	}
	sbdf := xenabi.XEN_DMOP_PCI_SBDF(uint64(seg), uint64(bus), uint64(dev), uint64(fn))
	s := c.acquire(op)
	u := s.u()
	le.PutUint16(u[0:], uint16(id))
	le.PutUint32(u[4:], xenabi.XEN_DMOP_IO_RANGE_PCI)
	le.PutUint64(u[8:], sbdf)
	le.PutUint64(u[16:], sbdf)
	if err := c.do(s); err != nil {
		return c.wrap(name, fmt.Errorf("pci %04x:%02x:%02x.%x: %w", seg, bus, dev, fn, err))
	}
	return nil
}

// MapPCIDev claims the configuration space of one PCI function for server id.
func (c *Client) MapPCIDev(id ServerID, seg uint16, bus, dev, fn uint8) error {
	return c.pciDev(xenabi.XEN_DMOP_map_io_range_to_ioreq_server, "map_pcidev_to_ioreq_server", id, seg, bus, dev, fn)
}

// UnmapPCIDev releases one PCI function from server id.
func (c *Client) UnmapPCIDev(id ServerID, seg uint16, bus, dev, fn uint8) error {
	return c.pciDev(xenabi.XEN_DMOP_unmap_io_range_from_ioreq_server, "unmap_pcidev_from_ioreq_server", id, seg, bus, dev, fn)
}

// SetIOReqServerState enables or disables server id.
func (c *Client) SetIOReqServerState(id ServerID, enabled bool) error {
	s := c.acquire(xenabi.XEN_DMOP_set_ioreq_server_state)
	le.PutUint16(s.u()[0:], uint16(id))
	s.u()[2] = boolByte(enabled)
	if err := c.do(s); err != nil {
		return c.wrap("set_ioreq_server_state", err)
	}
	return nil
}

// DestroyIOReqServer destroys server id.
func (c *Client) DestroyIOReqServer(id ServerID) error {
	s := c.acquire(xenabi.XEN_DMOP_destroy_ioreq_server)
	le.PutUint16(s.u()[0:], uint16(id))
	if err := c.do(s); err != nil {
		return c.wrap("destroy_ioreq_server", err)
	}
	return nil
}

// SetPCIIntxLevel sets the level of INTx pin intx (0-3 = INTA-INTD) of a
// PCI device. It allocates nothing on success.
func (c *Client) SetPCIIntxLevel(seg uint16, bus, dev, intx uint8, level bool) error {
	s := c.acquire(xenabi.XEN_DMOP_set_pci_intx_level)
	u := s.u()
	le.PutUint16(u[0:], seg)
	u[2] = bus
	u[3] = dev
	u[4] = intx
	u[5] = boolByte(level)
	if err := c.do(s); err != nil {
		return c.wrap("set_pci_intx_level", err)
	}
	return nil
}

// SetISAIRQLevel sets the level of ISA IRQ irq (0-15). It allocates
// nothing on success.
func (c *Client) SetISAIRQLevel(irq uint8, level bool) error {
	s := c.acquire(xenabi.XEN_DMOP_set_isa_irq_level)
	u := s.u()
	u[0] = irq
	u[1] = boolByte(level)
	if err := c.do(s); err != nil {
		return c.wrap("set_isa_irq_level", err)
	}
	return nil
}

// SetIRQLevel sets the level of interrupt irq (Arm guests:
// XEN_DMOP_set_irq_level). It allocates nothing on success.
func (c *Client) SetIRQLevel(irq uint32, level bool) error {
	s := c.acquire(xenabi.XEN_DMOP_set_irq_level)
	u := s.u()
	le.PutUint32(u[0:], irq)
	u[4] = boolByte(level)
	if err := c.do(s); err != nil {
		return c.wrap("set_irq_level", err)
	}
	return nil
}

// SetPCILinkRoute routes PCI INTx link (0-3) to ISA IRQ isaIRQ (1-15, or 0
// to disable the link).
func (c *Client) SetPCILinkRoute(link, isaIRQ uint8) error {
	s := c.acquire(xenabi.XEN_DMOP_set_pci_link_route)
	u := s.u()
	u[0] = link
	u[1] = isaIRQ
	if err := c.do(s); err != nil {
		return c.wrap("set_pci_link_route", err)
	}
	return nil
}

// InjectMSI injects the MSI message (addr, data). It allocates nothing on
// success.
func (c *Client) InjectMSI(addr uint64, data uint32) error {
	s := c.acquire(xenabi.XEN_DMOP_inject_msi)
	u := s.u()
	le.PutUint32(u[0:], data)
	le.PutUint64(u[8:], addr)
	if err := c.do(s); err != nil {
		return c.wrap("inject_msi", err)
	}
	return nil
}

// TrackDirtyVRAM enables dirty tracking of nr pages from firstPFN and
// fills bitmap (at least (nr+7)/8 bytes; bit i = page firstPFN+i) with the
// pages dirtied since the previous call. nr == 0 stops tracking. Linux
// limits a DM-op buffer to 4096 bytes, so nr is at most 32768 (128 MiB of
// VRAM); larger ranges fail with E2BIG.
func (c *Client) TrackDirtyVRAM(firstPFN uint64, nr uint32, bitmap []byte) error {
	need := (uint64(nr) + 7) / 8
	if uint64(len(bitmap)) < need {
		return c.wrap("track_dirty_vram", fmt.Errorf("%d pages need a %d-byte bitmap, have %d: %w", nr, need, len(bitmap), unix.EINVAL))
	}
	s := c.acquire(xenabi.XEN_DMOP_track_dirty_vram)
	u := s.u()
	le.PutUint32(u[0:], nr)
	le.PutUint64(u[8:], firstPFN)
	b := bitmap[:need:need]
	if b == nil {
		b = []byte{} // Xen wants the second buffer even when it is empty
	}
	s.call.SetExtra(b)
	if err := c.do(s); err != nil {
		return c.wrap("track_dirty_vram", err)
	}
	return nil
}

// Extent is a run of contiguous guest frames (struct
// xen_dm_op_modified_memory_extent).
type Extent struct {
	FirstPFN uint64
	Nr       uint32
}

// extentSize is sizeof(struct xen_dm_op_modified_memory_extent).
const extentSize = 16

// maxExtents bounds one ModifiedMemory call.
const maxExtents = 1 << 16

// extentsPerOp is how many extents one DM op carries: Linux refuses DM-op
// buffers over privcmd_dm_op_buf_max_size (4096 bytes) with E2BIG
// (drivers/xen/privcmd.c), so longer lists are split.
const extentsPerOp = 4096 / extentSize

// ModifiedMemory tells Xen the device model wrote to these guest frames
// (for log-dirty tracking during migration). Lists longer than one DM op
// can carry are sent in several ops; the first failure stops the rest.
func (c *Client) ModifiedMemory(extents ...Extent) error {
	if len(extents) == 0 || len(extents) > maxExtents {
		return c.wrap("modified_memory", fmt.Errorf("%d extents: %w", len(extents), unix.EINVAL))
	}
	for len(extents) > 0 {
		n := min(len(extents), extentsPerOp)
		buf := make([]byte, n*extentSize)
		for i, e := range extents[:n] {
			le.PutUint32(buf[i*extentSize:], e.Nr)
			le.PutUint64(buf[i*extentSize+8:], e.FirstPFN)
		}
		s := c.acquire(xenabi.XEN_DMOP_modified_memory)
		le.PutUint32(s.u()[0:], uint32(n))
		s.call.SetExtra(buf)
		if err := c.do(s); err != nil {
			return c.wrap("modified_memory", err)
		}
		extents = extents[n:]
	}
	return nil
}

// SetMemType sets the HVM memory type (xenabi.HVMMEM_*) of nr frames from
// firstPFN.
func (c *Client) SetMemType(memType uint16, firstPFN uint64, nr uint32) error {
	s := c.acquire(xenabi.XEN_DMOP_set_mem_type)
	u := s.u()
	le.PutUint32(u[0:], nr)
	le.PutUint16(u[4:], memType)
	le.PutUint64(u[8:], firstPFN)
	if err := c.do(s); err != nil {
		return c.wrap("set_mem_type", err)
	}
	return nil
}

// Event is an event to inject into a vCPU (struct
// xen_dm_op_inject_event).
type Event struct {
	VCPU      uint32
	Vector    uint8
	Type      uint8  // xenabi.XEN_DMOP_EVENT_*
	InsnLen   uint8  // instruction length, for software events
	ErrorCode uint32 // or ^uint32(0) for none
	CR2       uint64 // %cr2 for #PF, pending_dbg for #DB
}

// InjectEvent injects e into its vCPU.
func (c *Client) InjectEvent(e Event) error {
	s := c.acquire(xenabi.XEN_DMOP_inject_event)
	u := s.u()
	le.PutUint32(u[0:], e.VCPU)
	u[4] = e.Vector
	u[5] = e.Type
	u[6] = e.InsnLen
	le.PutUint32(u[8:], e.ErrorCode)
	le.PutUint64(u[16:], e.CR2)
	if err := c.do(s); err != nil {
		return c.wrap("inject_event", err)
	}
	return nil
}

// MapMemTypeToIOReqServer forwards accesses (flags:
// xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE, or 0 to unmap) to pages of
// memType (only xenabi.HVMMEM_ioreq_server) to server id.
func (c *Client) MapMemTypeToIOReqServer(id ServerID, memType uint16, flags uint32) error {
	// The same checks as libxendevicemodel.
	if memType != xenabi.HVMMEM_ioreq_server || flags&^xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE != 0 {
		return c.wrap("map_mem_type_to_ioreq_server", fmt.Errorf("type %d flags %#x: %w", memType, flags, unix.EINVAL))
	}
	s := c.acquire(xenabi.XEN_DMOP_map_mem_type_to_ioreq_server)
	u := s.u()
	le.PutUint16(u[0:], uint16(id))
	le.PutUint16(u[2:], memType)
	le.PutUint32(u[4:], flags)
	if err := c.do(s); err != nil {
		return c.wrap("map_mem_type_to_ioreq_server", err)
	}
	return nil
}

// RemoteShutdown shuts the domain down for reason (xenabi.SHUTDOWN_*).
func (c *Client) RemoteShutdown(reason uint32) error {
	s := c.acquire(xenabi.XEN_DMOP_remote_shutdown)
	le.PutUint32(s.u()[0:], reason)
	if err := c.do(s); err != nil {
		return c.wrap("remote_shutdown", err)
	}
	return nil
}

// RelocateMemory moves size frames from srcGFN to dstGFN in the guest's
// physical address space.
func (c *Client) RelocateMemory(size uint32, srcGFN, dstGFN uint64) error {
	s := c.acquire(xenabi.XEN_DMOP_relocate_memory)
	u := s.u()
	le.PutUint32(u[0:], size)
	le.PutUint64(u[8:], srcGFN)
	le.PutUint64(u[16:], dstGFN)
	if err := c.do(s); err != nil {
		return c.wrap("relocate_memory", err)
	}
	return nil
}

// PinMemoryCacheattr pins the cache attribute (xenabi.XEN_DMOP_MEM_CACHEATTR_*,
// or XEN_DMOP_DELETE_MEM_CACHEATTR) of the inclusive GFN range [start, end].
func (c *Client) PinMemoryCacheattr(start, end uint64, typ uint32) error {
	s := c.acquire(xenabi.XEN_DMOP_pin_memory_cacheattr)
	u := s.u()
	le.PutUint64(u[0:], start)
	le.PutUint64(u[8:], end)
	le.PutUint32(u[16:], typ)
	if err := c.do(s); err != nil {
		return c.wrap("pin_memory_cacheattr", err)
	}
	return nil
}

// NrVCPUs returns the domain's number of vCPUs.
func (c *Client) NrVCPUs() (uint32, error) {
	s := c.acquire(xenabi.XEN_DMOP_nr_vcpus)
	err := c.p.Do(c.dom, s.call)
	n := le.Uint32(s.u()[0:])
	s.mu.Unlock()
	if err != nil {
		return 0, c.wrap("nr_vcpus", err)
	}
	return n, nil
}
