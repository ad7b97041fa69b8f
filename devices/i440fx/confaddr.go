package i440fx

import (
	"fmt"
	"sync/atomic"

	"godm/devices"
)

// ConfigAddressPort is CONFIG_ADDRESS of configuration mechanism #1, the
// first of the four ports 0xcf8..0xcfb the host bridge decodes.
//
// Xen latches a dword written there for its own decoding of 0xcfc..0xcff
// and still forwards the access to the ioreq servers
// (xen/arch/x86/hvm/io.c: hvm_access_cf8 returns X86EMUL_UNHANDLEABLE "to
// fall through to the catch all emulator"), so the guest reads back what
// the device model keeps. Linux probes the mechanism by writing 0x80000000
// and reading it back (arch/x86/pci/direct.c: pci_check_type1): with no
// answer it finds no PCI at all.
const ConfigAddressPort = 0xcf8

// configAddressPorts is the size of the port block.
const configAddressPorts = 4

// resetControlOffset is PIIX3's reset control register inside the block
// (port 0xcf9), a byte register of the ISA bridge that the bus cannot
// register on its own because the host bridge's block covers it.
const resetControlOffset = 1

// configAddress serves 0xcf8..0xcfb as QEMU's host bridge does
// (hw/pci/pci_host.c pci_host_config_read/write): a dword write at 0xcf8
// sets the register, other writes are ignored, and a read of any width at
// any offset returns the register's low bytes (not shifted by the
// offset). A byte at 0xcf9 is the reset control register.
type configAddress struct {
	v   atomic.Uint32
	rcr devices.Handler
}

func (c *configAddress) Read(a devices.Access) uint64 {
	if a.Offset == resetControlOffset && a.Size == 1 && c.rcr != nil {
		return c.rcr.Read(a)
	}
	return uint64(c.v.Load()) & devices.SizeMask(a.Size)
}

func (c *configAddress) Write(a devices.Access, v uint64) {
	switch {
	case a.Offset == resetControlOffset && a.Size == 1 && c.rcr != nil:
		c.rcr.Write(a, v)
	case a.Offset == 0 && a.Size == 4:
		c.v.Store(uint32(v))
	}
}

// AttachPorts registers the host bridge's port block 0xcf8..0xcfb in pio:
// CONFIG_ADDRESS, and the reset control register resetControl (PIIX3's,
// nil for none) at 0xcf9, which the block covers.
func (d *Device) AttachPorts(pio *devices.Space, resetControl devices.Handler) error {
	d.addr.rcr = resetControl
	if err := pio.Register(ConfigAddressPort, configAddressPorts, &d.addr); err != nil {
		return fmt.Errorf("i440fx: attach ports: %w", err)
	}
	return nil
}

// ConfigAddress returns the value of CONFIG_ADDRESS.
func (d *Device) ConfigAddress() uint32 { return d.addr.v.Load() }

// ConfigDataPort is CONFIG_DATA of configuration mechanism #1: ports
// 0xcfc..0xcff.
const ConfigDataPort = 0xcfc

// configData serves 0xcfc..0xcff as port I/O through CONFIG_ADDRESS, as
// QEMU's host bridge does (hw/pci/pci_host.c pci_data_read/write: with
// the enable bit clear a read is all-ones and a write is dropped). Under
// Xen these accesses normally arrive as PCI-config requests, because Xen
// latches CONFIG_ADDRESS itself and converts 0xcfc..0xcff while its
// enable bit is set (xen/arch/x86/hvm/ioreq.c hvm_select_ioreq_server).
// Xen's latch is not part of a domain's save record, so after xl restore
// (or when a write to 0xcf8 reached only the device model) the guest's
// next data access is plain port I/O; QEMU claims 0xcf8..0xcff for that
// reason, and so does godm.
type configData struct {
	addr *configAddress
	cfg  *devices.ConfigSpace
}

func (c *configData) target(a devices.Access) (devices.SBDF, uint32, bool) {
	v := c.addr.v.Load()
	if v&0x80000000 == 0 {
		return 0, 0, false
	}
	sbdf := devices.NewSBDF(0, uint8(v>>16), uint8(v>>11)&0x1f, uint8(v>>8)&7)
	return sbdf, v&0xfc | uint32(a.Offset), true
}

func (c *configData) Read(a devices.Access) uint64 {
	sbdf, reg, ok := c.target(a)
	if !ok {
		return devices.SizeMask(a.Size)
	}
	return c.cfg.Read(sbdf, reg, a.Size, a.VCPU)
}

func (c *configData) Write(a devices.Access, v uint64) {
	if sbdf, reg, ok := c.target(a); ok {
		c.cfg.Write(sbdf, reg, a.Size, a.VCPU, v)
	}
}

// AttachDataPorts registers CONFIG_DATA (0xcfc..0xcff) in pio, reaching
// the functions of cfg through this bridge's CONFIG_ADDRESS.
func (d *Device) AttachDataPorts(pio *devices.Space, cfg *devices.ConfigSpace) error {
	if err := pio.Register(ConfigDataPort, 4, &configData{addr: &d.addr, cfg: cfg}); err != nil {
		return fmt.Errorf("i440fx: attach data ports: %w", err)
	}
	return nil
}
