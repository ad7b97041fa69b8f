package ioreq

import (
	"sync"
	"sync/atomic"

	"godm/devices"
	"godm/irq"
)

// IRQController is the hypervisor side of interrupt delivery for one
// domain. *dm.Client implements it (XEN_DMOP_set_isa_irq_level,
// XEN_DMOP_set_pci_intx_level, XEN_DMOP_inject_msi); its methods must not
// allocate.
type IRQController interface {
	SetISAIRQLevel(irq uint8, level bool) error
	SetPCIIntxLevel(seg uint16, bus, dev, intx uint8, level bool) error
	InjectMSI(addr uint64, data uint32) error
}

// level is the shared part of the level-triggered lines: the current level
// and the error count. The mutex orders hypercalls with level changes so
// the hypervisor ends at the last level set.
type level struct {
	mu   sync.Mutex
	high bool // guarded by mu
	errs atomic.Uint64
}

// Errors returns how many hypervisor calls failed.
func (l *level) Errors() uint64 { return l.errs.Load() }

// ISALine is an irq.Line driving one ISA IRQ of the guest's virtual PIC and
// IOAPIC. It calls the hypervisor only when the level changes.
type ISALine struct {
	c   IRQController
	irq uint8
	level
}

// NewISALine returns the line for ISA IRQ n (0..15), initially low.
func NewISALine(c IRQController, n uint8) *ISALine { return &ISALine{c: c, irq: n} }

// SetLevel implements irq.Line.
func (l *ISALine) SetLevel(high bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.high == high {
		return
	}
	if l.c.SetISAIRQLevel(l.irq, high) != nil {
		l.errs.Add(1)
		return
	}
	l.high = high
}

// PCIIntxLine is an irq.Line driving one INTx pin of a PCI function (Xen
// routes it through the PCI link routing set with set_pci_link_route). It
// calls the hypervisor only when the level changes.
type PCIIntxLine struct {
	c    IRQController
	sbdf devices.SBDF
	intx uint8
	level
}

// NewPCIIntxLine returns the line for pin intx (0..3 = INTA..INTD) of the
// device at sbdf (Xen takes segment, bus, device and pin; the function does
// not matter to it), initially low.
func NewPCIIntxLine(c IRQController, sbdf devices.SBDF, intx uint8) *PCIIntxLine {
	return &PCIIntxLine{c: c, sbdf: sbdf, intx: intx & 3}
}

// SetLevel implements irq.Line.
func (l *PCIIntxLine) SetLevel(high bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.high == high {
		return
	}
	if l.c.SetPCIIntxLevel(l.sbdf.Seg(), l.sbdf.Bus(), l.sbdf.Dev(), l.intx, high) != nil {
		l.errs.Add(1)
		return
	}
	l.high = high
}

// MSI is an irq.MSISender injecting message-signalled interrupts into the
// guest (XEN_DMOP_inject_msi).
type MSI struct {
	c    IRQController
	errs atomic.Uint64
}

// NewMSI returns an MSI sender for c's domain.
func NewMSI(c IRQController) *MSI { return &MSI{c: c} }

// SendMSI implements irq.MSISender.
func (m *MSI) SendMSI(addr uint64, data uint32) {
	if m.c.InjectMSI(addr, data) != nil {
		m.errs.Add(1)
	}
}

// Errors returns how many injections failed.
func (m *MSI) Errors() uint64 { return m.errs.Load() }

var (
	_ irq.Line      = (*ISALine)(nil)
	_ irq.Line      = (*PCIIntxLine)(nil)
	_ irq.MSISender = (*MSI)(nil)
)
