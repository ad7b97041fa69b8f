package xensim

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"godm/hyp"
	"godm/hyp/xenabi"
	"godm/memory"

	"golang.org/x/sys/unix"
)

const (
	pageSize  = xenabi.XEN_PAGE_SIZE
	pageShift = 12

	// maxIOReqServers is MAX_NR_IOREQ_SERVERS (xen/include/xen/sched.h).
	maxIOReqServers = 8
	// maxSlotVCPUs is how many 32-byte ioreq slots fit the single ioreq
	// frame Xen serves (xen/common/ioreq.c:ioreq_server_get_frame).
	maxSlotVCPUs = pageSize / xenabi.IoreqSize
	// maxPorts bounds each domain's event-channel table (2-level ABI on
	// 64-bit guests: 4096 ports).
	maxPorts = 4096
	// hvmNrParams is HVM_NR_PARAMS (xen/include/public/hvm/params.h).
	hvmNrParams = 39
	// hvmParamIOReqPFN and hvmParamBufIOReqPFN are the legacy
	// HVM_PARAM_IOREQ_PFN and HVM_PARAM_BUFIOREQ_PFN.
	hvmParamIOReqPFN    = 5
	hvmParamBufIOReqPFN = 6

	// Default pool of gfns for ioreq pages mapped the legacy way
	// (HVM_PARAM_IOREQ_SERVER_PFN/NR_IOREQ_SERVER_PAGES as libxl sets them).
	defaultIOReqGFNBase  = 0xfeff0
	defaultIOReqGFNCount = 8
)

// Region is a range of guest-physical RAM.
type Region struct {
	GPA  uint64 // page aligned
	Size uint64 // page multiple, > 0
}

// DomainConfig describes a simulated HVM guest.
type DomainConfig struct {
	// ID is the domain id to use; zero picks the next free one.
	ID hyp.DomID
	// VCPUs is the number of vCPUs, 1..128 (one ioreq page).
	VCPUs int
	// RAM lists the populated ranges; everything else is a hole
	// (p2m_mmio_dm). Ranges must not overlap.
	RAM []Region
	// DeviceModel is the domain (besides dom0) allowed to issue DM ops
	// for this guest, e.g. a stub domain. Zero means dom0 only.
	DeviceModel hyp.DomID
	// IOReqGFNBase and IOReqGFNCount describe the gfns Xen may use for
	// ioreq pages requested the legacy way (get_ioreq_server_info without
	// XEN_DMOP_no_gfns). Zero count means 8 gfns at 0xfeff0.
	IOReqGFNBase  uint64
	IOReqGFNCount int
	// LogDirty puts the domain in log-dirty mode. Without it Xen ignores
	// XEN_DMOP_modified_memory (returns 0 without checking); the
	// simulator still records it.
	LogDirty bool
	// MaxPages, when not zero, is the domain's memory limit in pages
	// (libxl's maxmem: XEN_DOMCTL_max_mem): populate_physmap stops at
	// the first page beyond it, as Xen's does (ENOMEM after a part).
	MaxPages uint64
}

type ramRegion struct {
	gpa, size uint64
	off       int64
}

// p2mEntry overrides the default p2m for one gfn.
type p2mEntry struct {
	hole bool   // nothing mapped (relocated away, decreased)
	ram  bool   // guest RAM (moved or populated), as opposed to a special page
	mem  *shmem // backing; nil with hole or for RAM relocated within ram
	fd   int
	off  int64
}

// Domain is a simulated domain: dom0, or an HVM guest from CreateDomain.
type Domain struct {
	s   *Sim
	id  hyp.DomID
	hvm bool
	cfg DomainConfig

	ram     *shmem
	regions []ramRegion

	// Guarded by s.mu.
	overlay      map[uint64]p2mEntry
	memType      map[uint64]uint8 // gfn → HVMMEM_* where not the default
	maxGPFN      uint64
	vcpus        []*VCPU
	servers      [maxIOReqServers]*server
	ports        []*evPort
	params       [hvmNrParams]uint64
	gfnFree      []bool // ioreq gfn pool
	legacyFree   [2]bool
	memTypeSrv   *server
	memTypeFlags uint32
	cacheAttrs   []cacheAttr
	vram         *vramTracker
	shutdown     int64 // -1 = running
	dead         bool
	passthru     *passthrough
	extraMem     []*shmem // populate_physmap backing
	// mapcacheInvalidate is Xen's qemu_mapcache_invalidate flag.
	mapcacheInvalidate bool
	intx               [32][4]bool
	isaIRQ             [16]bool
	links              [4]uint8

	cf8 uint32 // latched 0xcf8 (atomic)

	dying chan struct{}
	// zombie: destroyed by the toolstack but still referenced (Kill);
	// getdomaininfo reports XEN_DOMINF_dying, everything else still works.
	zombie    bool
	closeOnce sync.Once
	closeErr  error
}

type cacheAttr struct {
	start, end uint64
	typ        uint32
}

func newDomain(s *Sim, id hyp.DomID, cfg *DomainConfig) *Domain {
	d := &Domain{s: s, id: id, overlay: make(map[uint64]p2mEntry), memType: make(map[uint64]uint8),
		shutdown: -1, dying: make(chan struct{}), ports: make([]*evPort, 64)}
	if cfg != nil {
		d.cfg = *cfg
		d.hvm = true
	}
	return d
}

// CreateDomain creates an HVM guest with memfd-backed RAM.
func (s *Sim) CreateDomain(cfg DomainConfig) (*Domain, error) {
	if cfg.VCPUs < 1 || cfg.VCPUs > maxSlotVCPUs {
		return nil, fmt.Errorf("xensim: create domain: %d vCPUs (want 1..%d): %w", cfg.VCPUs, maxSlotVCPUs, unix.EINVAL)
	}
	regs := append([]Region(nil), cfg.RAM...)
	sort.Slice(regs, func(i, j int) bool { return regs[i].GPA < regs[j].GPA })
	var total uint64
	for i, r := range regs {
		if r.Size == 0 || r.GPA%pageSize != 0 || r.Size%pageSize != 0 || r.GPA+r.Size < r.GPA {
			return nil, fmt.Errorf("xensim: create domain: bad RAM region %#x+%#x: %w", r.GPA, r.Size, unix.EINVAL)
		}
		if i > 0 && regs[i-1].GPA+regs[i-1].Size > r.GPA {
			return nil, fmt.Errorf("xensim: create domain: RAM regions overlap at %#x: %w", r.GPA, unix.EINVAL)
		}
		total += r.Size
	}
	if cfg.IOReqGFNCount == 0 {
		cfg.IOReqGFNBase, cfg.IOReqGFNCount = defaultIOReqGFNBase, defaultIOReqGFNCount
	}
	d := newDomain(s, 0, &cfg)
	if total > 0 {
		m, err := newShmem("xensim-ram", int(total))
		if err != nil {
			return nil, err
		}
		d.ram = m
	}
	var off int64
	for _, r := range regs {
		d.regions = append(d.regions, ramRegion{gpa: r.GPA, size: r.Size, off: off})
		off += int64(r.Size)
		if last := (r.GPA + r.Size - 1) >> pageShift; last > d.maxGPFN {
			d.maxGPFN = last
		}
	}
	d.gfnFree = make([]bool, cfg.IOReqGFNCount)
	for i := range d.gfnFree {
		d.gfnFree[i] = true
	}
	d.vcpus = make([]*VCPU, cfg.VCPUs)
	for i := range d.vcpus {
		d.vcpus[i] = newVCPU(d, uint32(i))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		d.ram.close()
		return nil, fmt.Errorf("xensim: create domain: %w", hyp.ErrClosed)
	}
	if cfg.ID != 0 {
		if cfg.ID >= xenabi.DOMID_FIRST_RESERVED || s.domains[cfg.ID] != nil {
			d.ram.close()
			return nil, fmt.Errorf("xensim: create domain: id %v unusable or taken: %w", cfg.ID, unix.EEXIST)
		}
		d.id = cfg.ID
		s.domains[d.id] = d
		return d, nil
	}
	for s.domains[s.nextDom] != nil || s.nextDom == 0 || s.nextDom >= xenabi.DOMID_FIRST_RESERVED {
		s.nextDom++
		if s.nextDom >= xenabi.DOMID_FIRST_RESERVED {
			s.nextDom = 1
		}
	}
	d.id = s.nextDom
	s.nextDom++
	s.domains[d.id] = d
	return d, nil
}

// ID returns the domain id.
func (d *Domain) ID() hyp.DomID { return d.id }

// NumVCPUs returns the number of vCPUs.
func (d *Domain) NumVCPUs() int { return len(d.vcpus) }

// VCPU returns vCPU i, or nil if there is none.
func (d *Domain) VCPU(i int) *VCPU {
	if i < 0 || i >= len(d.vcpus) {
		return nil
	}
	return d.vcpus[i]
}

// Kill models xl destroy while a device model still holds foreign
// mappings of the domain: Xen marks it dying (domain_kill; getdomaininfo
// reports XEN_DOMINF_dying), tears down its ioreq servers
// (hvm_domain_relinquish_resources) but keeps the domain and answers DM
// ops on it until the last reference goes, so a device model that only
// waits for ESRCH never sees one and keeps the zombie alive. Close
// completes the destruction.
func (d *Domain) Kill() error {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	d.zombie = true
	var errs []error
	for id, srv := range d.servers {
		if srv != nil {
			errs = append(errs, d.destroyServerLocked(srv))
			d.servers[id] = nil
		}
	}
	return errors.Join(errs...)
}

// Close destroys the domain: its ioreq servers, event channels and RAM.
// vCPUs waiting for the device model fail with hyp.ErrClosed. Idempotent.
func (d *Domain) Close() error {
	if d.id == 0 {
		return nil
	}
	return d.destroy()
}

func (d *Domain) destroy() error {
	d.closeOnce.Do(func() {
		s := d.s
		s.mu.Lock()
		d.dead = true
		close(d.dying)
		var errs []error
		for id, srv := range d.servers {
			if srv != nil {
				errs = append(errs, d.destroyServerLocked(srv))
				d.servers[id] = nil
			}
		}
		for p := range d.ports {
			if d.ports[p] != nil {
				s.closePortLocked(d, uint32(p))
			}
		}
		if s.domains[d.id] == d {
			delete(s.domains, d.id)
		}
		// Mappings the device model made of this RAM stay valid (they
		// hold the memfd's pages), as foreign mappings keep pages alive.
		errs = append(errs, d.ram.close())
		for _, m := range d.extraMem {
			errs = append(errs, m.close())
		}
		d.extraMem = nil
		s.mu.Unlock()
		d.closeErr = errors.Join(errs...)
	})
	return d.closeErr
}

// lookupGFN returns the backing of gfn (fd and offset) for mapping, or
// ok=false for a hole. Called with s.mu held.
func (d *Domain) lookupGFN(gfn uint64) (fd int, off int64, ok bool) {
	if e, found := d.overlay[gfn]; found {
		if e.hole {
			return 0, 0, false
		}
		return e.fd, e.off, true
	}
	if r := d.region(gfn << pageShift); r != nil && d.ram != nil {
		return d.ram.fd, r.off + int64(gfn<<pageShift-r.gpa), true
	}
	return 0, 0, false
}

func (d *Domain) region(gpa uint64) *ramRegion {
	i := sort.Search(len(d.regions), func(i int) bool { return d.regions[i].gpa+d.regions[i].size > gpa })
	if i < len(d.regions) && d.regions[i].gpa <= gpa {
		return &d.regions[i]
	}
	return nil
}

// ramBytes returns the simulator's view of the RAM page holding gpa (from
// gpa to the end of the page), or nil if gpa is not RAM. Called with s.mu
// held (shared is enough).
func (d *Domain) ramBytes(gpa uint64) []byte {
	gfn := gpa >> pageShift
	in := gpa & (pageSize - 1)
	if e, found := d.overlay[gfn]; found {
		if e.hole || e.mem == nil {
			return nil
		}
		return e.mem.mem[e.off+int64(in) : e.off+pageSize]
	}
	r := d.region(gpa)
	if r == nil || d.ram == nil {
		return nil
	}
	o := r.off + int64(gpa-r.gpa)
	return d.ram.mem[o : o+int64(pageSize-in)]
}

// isRAM reports whether gfn is populated guest RAM (not a special page).
func (d *Domain) isRAM(gfn uint64) bool {
	if e, found := d.overlay[gfn]; found {
		return !e.hole && e.ram
	}
	return d.region(gfn<<pageShift) != nil
}

// ReadRAM copies guest RAM at gpa into p, as the guest would see it. It
// fails with an error wrapping memory.ErrUnmapped at the first page that
// is not RAM.
func (d *Domain) ReadRAM(gpa uint64, p []byte) error { return d.copyRAM(gpa, p, false) }

// WriteRAM copies p into guest RAM at gpa, as a guest store would (pages
// are marked dirty for VRAM tracking).
func (d *Domain) WriteRAM(gpa uint64, p []byte) error { return d.copyRAM(gpa, p, true) }

func (d *Domain) copyRAM(gpa uint64, p []byte, write bool) error {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	if d.dead {
		return fmt.Errorf("xensim: %v: RAM access: %w", d.id, hyp.ErrClosed)
	}
	for len(p) > 0 {
		b := d.ramBytes(gpa)
		if b == nil {
			return fmt.Errorf("xensim: %v: gpa %#x: %w", d.id, gpa, memory.ErrUnmapped)
		}
		var n int
		if write {
			n = copy(b, p)
			d.markDirty(gpa >> pageShift)
		} else {
			n = copy(p, b)
		}
		p = p[n:]
		gpa += uint64(n)
	}
	return nil
}

// ShutdownReason returns the reason of the last remote shutdown, or -1.
func (d *Domain) ShutdownReason() int64 {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	return d.shutdown
}

// MemType returns the HVMMEM_* type of gfn as the p2m holds it.
func (d *Domain) MemType(gfn uint64) uint8 {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	return d.memTypeOf(gfn)
}

func (d *Domain) memTypeOf(gfn uint64) uint8 {
	if t, ok := d.memType[gfn]; ok {
		return t
	}
	if d.isRAM(gfn) {
		return xenabi.HVMMEM_ram_rw
	}
	return xenabi.HVMMEM_mmio_dm
}

// HVMParam returns an HVM parameter as set by HVMOP_set_param.
func (d *Domain) HVMParam(index int) uint64 {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	if index < 0 || index >= hvmNrParams {
		return 0
	}
	return d.params[index]
}

// INTxLevel returns the level of PCI INTx pin (0-3 = A-D) of device dev on
// bus 0 as last set by XEN_DMOP_set_pci_intx_level.
func (d *Domain) INTxLevel(dev, pin uint8) bool {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	if dev >= 32 || pin >= 4 {
		return false
	}
	return d.intx[dev][pin]
}

// ISAIRQLevel returns the level of ISA IRQ irq as last set by
// XEN_DMOP_set_isa_irq_level.
func (d *Domain) ISAIRQLevel(irq uint8) bool {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	return irq < 16 && d.isaIRQ[irq]
}

// LinkRoute returns the ISA IRQ PCI link (0-3) is routed to, 0 for none
// (XEN_DMOP_set_pci_link_route).
func (d *Domain) LinkRoute(link uint8) uint8 {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	if link >= 4 {
		return 0
	}
	return d.links[link]
}

// SetDeviceModel names the domain (besides dom0) allowed to act as this
// guest's device model (DomainConfig.DeviceModel), e.g. a stub domain
// created after the guest.
func (d *Domain) SetDeviceModel(dm hyp.DomID) {
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	d.cfg.DeviceModel = dm
}

// Memory returns the guest's RAM as a memory.Accessor (guest view: writes
// mark pages dirty for VRAM tracking), for tests that check DMA.
func (d *Domain) Memory() memory.Accessor { return guestMemory{d} }

type guestMemory struct{ d *Domain }

func (m guestMemory) Read(gpa memory.GPA, p []byte) error  { return m.d.ReadRAM(uint64(gpa), p) }
func (m guestMemory) Write(gpa memory.GPA, p []byte) error { return m.d.WriteRAM(uint64(gpa), p) }

// IORange is one claimed range of an ioreq server, inclusive.
type IORange struct{ Start, End uint64 }

// IOReqRanges returns the ranges ioreq server id claims, by kind
// (XEN_DMOP_IO_RANGE_PORT, _MEMORY, _PCI: the PCI ones as SBDF config
// addresses), merged as Xen's rangesets keep them; ok is false when the
// server does not exist.
func (d *Domain) IOReqRanges(id uint16) (ranges [3][]IORange, ok bool) {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	if int(id) >= maxIOReqServers || d.servers[id] == nil {
		return ranges, false
	}
	for k, rs := range d.servers[id].ranges {
		for _, r := range rs.r {
			ranges[k] = append(ranges[k], IORange{r.s, r.e})
		}
	}
	return ranges, true
}

// IsRAMPage reports whether gfn is populated RAM in the domain's p2m
// (where a guest access does not trap).
func (d *Domain) IsRAMPage(gfn uint64) bool {
	d.s.mu.RLock()
	defer d.s.mu.RUnlock()
	return d.isRAM(gfn)
}
