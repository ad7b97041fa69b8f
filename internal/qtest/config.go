package qtest

import (
	"sync"

	"godm/devices"
)

// ConfigPorts is configuration mechanism #1 (the 0xcf8 address and
// 0xcfc-0xcff data ports) in front of a godm ConfigSpace, for running the
// guest's config-space scripts (0xcf8/0xcfc port steps) against bare
// functions on a SpaceTarget. Register it on a port space at 0xcf8 with
// size 8. Under Xen the hypervisor does this decoding itself and hands the
// device model IOREQ_TYPE_PCI_CONFIG requests (xen/arch/x86/hvm/ioreq.c);
// the same scripts then run through xensim (internal/qtest/simtarget).
//
// As QEMU's host bridge (hw/pci/pci_host.c): only dword writes at 0xcf8
// change the address register, reads of 0xcf8-0xcfb of any width return
// it (masked to the width), data cycles with the enable bit clear read
// all-ones and are dropped when written. Only bus 0 (segment 0) exists.
type ConfigPorts struct {
	// Config is the configuration space behind the ports.
	Config *devices.ConfigSpace

	mu  sync.Mutex
	cf8 uint32
}

// Read implements devices.Handler.
func (c *ConfigPorts) Read(a devices.Access) uint64 {
	c.mu.Lock()
	cf8 := c.cf8
	c.mu.Unlock()
	if a.Offset < 4 {
		return uint64(cf8) & (1<<(8*uint(a.Size)) - 1)
	}
	sbdf, reg, ok := decode(cf8, a)
	if !ok {
		return 1<<(8*uint(a.Size)) - 1
	}
	return c.Config.Read(sbdf, reg, a.Size, a.VCPU)
}

// Write implements devices.Handler.
func (c *ConfigPorts) Write(a devices.Access, v uint64) {
	if a.Offset < 4 {
		if a.Offset == 0 && a.Size == 4 {
			c.mu.Lock()
			c.cf8 = uint32(v)
			c.mu.Unlock()
		}
		return
	}
	c.mu.Lock()
	cf8 := c.cf8
	c.mu.Unlock()
	if sbdf, reg, ok := decode(cf8, a); ok {
		c.Config.Write(sbdf, reg, a.Size, a.VCPU, v)
	}
}

// decode returns the function and register a data cycle at a addresses.
func decode(cf8 uint32, a devices.Access) (devices.SBDF, uint32, bool) {
	off := uint32(a.Offset - 4)
	if cf8&0x80000000 == 0 || (cf8>>16)&0xff != 0 || off+uint32(a.Size) > 4 {
		return 0, 0, false
	}
	devfn := uint8(cf8 >> 8)
	return devices.NewSBDF(0, 0, devfn>>3, devfn&7), cf8&0xfc | off, true
}

// NewConfigTarget returns a SpaceTarget whose port space holds only
// configuration mechanism #1 (ConfigPorts at 0xcf8-0xcff) in front of
// cfg: the guest's 0xcf8/0xcfc script steps reach cfg's functions on bus
// 0 as they would through a host bridge.
func NewConfigTarget(cfg *devices.ConfigSpace) (*SpaceTarget, error) {
	pio := devices.NewSpace("pci-config-ports")
	if err := pio.Register(0xcf8, 8, &ConfigPorts{Config: cfg}); err != nil {
		return nil, err
	}
	return NewSpaceTarget(pio), nil
}
