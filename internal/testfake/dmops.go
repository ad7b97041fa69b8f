package testfake

import (
	"fmt"
	"slices"
	"sync"
)

// DMOps records what a device model asks of Xen through the interrupt
// and platform DM ops (hyp/dm.Client's SetISAIRQLevel, SetPCIIntxLevel,
// InjectMSI, SetPCILinkRoute, RemoteShutdown): one line per call, in
// order —
//
//	isa IRQ=LEVEL
//	intx DEV.PIN=LEVEL        (SEG:BUS:DEV.PIN=LEVEL off segment 0 bus 0)
//	msi ADDR DATA             (hexadecimal)
//	route LINK->IRQ
//	shutdown REASON
//
// Every call returns the error set with Fail (none by default) after
// recording itself. It is safe for concurrent use; the zero DMOps is
// ready.
type DMOps struct {
	mu     sync.Mutex
	events []string
	fail   error
}

func (d *DMOps) record(format string, args ...any) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, fmt.Sprintf(format, args...))
	return d.fail
}

// SetISAIRQLevel records an ISA IRQ level.
func (d *DMOps) SetISAIRQLevel(irq uint8, level bool) error {
	return d.record("isa %d=%v", irq, level)
}

// SetPCIIntxLevel records a PCI INTx level.
func (d *DMOps) SetPCIIntxLevel(seg uint16, bus, dev, intx uint8, level bool) error {
	if seg != 0 || bus != 0 {
		return d.record("intx %04x:%02x:%d.%d=%v", seg, bus, dev, intx, level)
	}
	return d.record("intx %d.%d=%v", dev, intx, level)
}

// InjectMSI records an MSI.
func (d *DMOps) InjectMSI(addr uint64, data uint32) error {
	return d.record("msi %#x %#x", addr, data)
}

// SetPCILinkRoute records a PCI interrupt link's route.
func (d *DMOps) SetPCILinkRoute(link, isaIRQ uint8) error {
	return d.record("route %d->%d", link, isaIRQ)
}

// RemoteShutdown records a shutdown request.
func (d *DMOps) RemoteShutdown(reason uint32) error {
	return d.record("shutdown %d", reason)
}

// Fail makes every later call return err (nil: succeed again).
func (d *DMOps) Fail(err error) {
	d.mu.Lock()
	d.fail = err
	d.mu.Unlock()
}

// Events returns what was recorded since the last Take.
func (d *DMOps) Events() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.events)
}

// Take returns what was recorded since the last Take and forgets it.
func (d *DMOps) Take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.events
	d.events = nil
	return e
}
