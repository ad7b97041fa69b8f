package dm

import (
	"testing"

	"godm/hyp/internal/golden"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"
)

// TestGolden checks every DM op against what libxendevicemodel hands the
// kernel for the same call (fixtures captured by tools/xencapture; the
// arguments are those of tools/xencapture/driver.c): the privcmd_dm_op
// struct, the privcmd_dm_op_buf array, every DM-op buffer byte for byte
// (padding the library leaves undefined excepted) and what the fake kernel
// wrote back.
func TestGolden(t *testing.T) {
	tests := []struct {
		fixture string
		call    func(c *Client) error
	}{
		{"dm_create_ioreq_server", func(c *Client) error { _, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC); return err }},
		{"dm_create_ioreq_server_off", func(c *Client) error { _, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_OFF); return err }},
		{"dm_get_ioreq_server_info", func(c *Client) error { _, err := c.GetIOReqServerInfo(1, false); return err }},
		{"dm_get_ioreq_server_info_nogfns", func(c *Client) error { _, err := c.GetIOReqServerInfo(1, true); return err }},
		{"dm_map_io_range_port", func(c *Client) error { return c.MapIORange(1, PortRange, 0x3f8, 0x3ff) }},
		{"dm_map_io_range_mmio", func(c *Client) error { return c.MapIORange(1, MemoryRange, 0xfebf0000, 0xfebf0fff) }},
		{"dm_unmap_io_range_port", func(c *Client) error { return c.UnmapIORange(1, PortRange, 0x3f8, 0x3ff) }},
		{"dm_unmap_io_range_mmio", func(c *Client) error { return c.UnmapIORange(1, MemoryRange, 0xfebf0000, 0xfebf0fff) }},
		{"dm_map_pcidev", func(c *Client) error { return c.MapPCIDev(1, 0x0001, 0x02, 0x03, 0x4) }},
		{"dm_unmap_pcidev", func(c *Client) error { return c.UnmapPCIDev(1, 0x0001, 0x02, 0x03, 0x4) }},
		{"dm_set_ioreq_server_state_on", func(c *Client) error { return c.SetIOReqServerState(1, true) }},
		{"dm_set_ioreq_server_state_off", func(c *Client) error { return c.SetIOReqServerState(1, false) }},
		{"dm_destroy_ioreq_server", func(c *Client) error { return c.DestroyIOReqServer(1) }},
		// The C caller passes a 16-byte bitmap; the library hands (nr+7)/8
		// bytes of it to the kernel.
		{"dm_track_dirty_vram", func(c *Client) error { return c.TrackDirtyVRAM(0xf0000, 100, make([]byte, 16)) }},
		{"dm_set_pci_intx_level", func(c *Client) error { return c.SetPCIIntxLevel(0x0001, 0x02, 0x03, 2, true) }},
		{"dm_set_pci_intx_level_low", func(c *Client) error { return c.SetPCIIntxLevel(0, 0, 5, 0, false) }},
		{"dm_set_isa_irq_level", func(c *Client) error { return c.SetISAIRQLevel(4, true) }},
		{"dm_set_isa_irq_level_low", func(c *Client) error { return c.SetISAIRQLevel(12, false) }},
		{"dm_set_irq_level", func(c *Client) error { return c.SetIRQLevel(40, true) }},
		{"dm_set_pci_link_route", func(c *Client) error { return c.SetPCILinkRoute(2, 10) }},
		{"dm_modified_memory", func(c *Client) error { return c.ModifiedMemory(Extent{FirstPFN: 0x1000, Nr: 16}) }},
		{"dm_modified_memory_bulk", func(c *Client) error {
			return c.ModifiedMemory(Extent{FirstPFN: 0x1000, Nr: 16}, Extent{FirstPFN: 0x8000, Nr: 2})
		}},
		{"dm_set_mem_type", func(c *Client) error { return c.SetMemType(xenabi.HVMMEM_ram_ro, 0x2000, 4) }},
		{"dm_inject_event", func(c *Client) error {
			return c.InjectEvent(Event{VCPU: 1, Vector: 14, Type: xenabi.XEN_DMOP_EVENT_hw_exc, ErrorCode: 0x2, InsnLen: 0, CR2: 0xdeadb000})
		}},
		{"dm_inject_msi", func(c *Client) error { return c.InjectMSI(0xfee01000, 0x4041) }},
		{"dm_map_mem_type_to_ioreq_server", func(c *Client) error {
			return c.MapMemTypeToIOReqServer(1, xenabi.HVMMEM_ioreq_server, xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE)
		}},
		{"dm_remote_shutdown", func(c *Client) error { return c.RemoteShutdown(xenabi.SHUTDOWN_reboot) }},
		{"dm_relocate_memory", func(c *Client) error { return c.RelocateMemory(8, 0x100, 0x200) }},
		{"dm_pin_memory_cacheattr", func(c *Client) error {
			return c.PinMemoryCacheattr(0xf0000, 0xf00ff, xenabi.XEN_DMOP_MEM_CACHEATTR_WC)
		}},
		{"dm_nr_vcpus", func(c *Client) error { _, err := c.NrVCPUs(); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			f := golden.Load(t, tt.fixture)
			c, k, _ := newClient(t)
			if err := tt.call(c); err != nil {
				t.Fatalf("call: %v", err)
			}
			want := f.Ioctl(t, xenabi.IOCTL_PRIVCMD_DM_OP)
			kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_DM_OP), want)
		})
	}
}

// TestGoldenCoversEveryOp fails when a DM-op fixture has no test above, so that
// a new capture is not silently left unchecked.
func TestGoldenCoversEveryOp(t *testing.T) {
	seen := map[uint32]bool{}
	for _, name := range []string{
		"dm_create_ioreq_server", "dm_get_ioreq_server_info", "dm_map_io_range_port", "dm_unmap_io_range_port",
		"dm_set_ioreq_server_state_on", "dm_destroy_ioreq_server", "dm_track_dirty_vram", "dm_set_pci_intx_level",
		"dm_set_isa_irq_level", "dm_set_irq_level", "dm_set_pci_link_route", "dm_modified_memory", "dm_set_mem_type", "dm_inject_event",
		"dm_inject_msi", "dm_map_mem_type_to_ioreq_server", "dm_remote_shutdown", "dm_relocate_memory",
		"dm_pin_memory_cacheattr", "dm_nr_vcpus",
	} {
		f := golden.Load(t, name)
		bufs := f.Ioctl(t, xenabi.IOCTL_PRIVCMD_DM_OP).DMOpBuffers(t)
		op := bufs[0].Bytes()
		seen[uint32(op[0])|uint32(op[1])<<8] = true
	}
	// Every op of dm_op.h, set_irq_level included: Xen acts on it only for
	// Arm guests, but xendevicemodel.h declares xendevicemodel_set_irq_level
	// and the capture driver calls it.
	for op := uint32(xenabi.XEN_DMOP_create_ioreq_server); op <= xenabi.XEN_DMOP_nr_vcpus; op++ {
		if !seen[op] {
			t.Errorf("DM op %d has no golden test", op)
		}
	}
}

// TestGoldenOpenRestrict checks privcmd.Open's DM_OP probe and Restrict against
// xendevicemodel_open and xendevicemodel_restrict.
func TestGoldenOpenRestrict(t *testing.T) {
	k := kerneltest.New()
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer p.Close()
	f := golden.Load(t, "dm_open")
	kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_DM_OP), f.Last(t, xenabi.IOCTL_PRIVCMD_DM_OP))
	if err := p.Restrict(dom); err != nil {
		t.Fatalf("Restrict: %v", err)
	}
	f = golden.Load(t, "dm_restrict")
	kerneltest.CheckIoctl(t, k.LastIoctl(t, xenabi.IOCTL_PRIVCMD_RESTRICT), f.Ioctl(t, xenabi.IOCTL_PRIVCMD_RESTRICT))
}
