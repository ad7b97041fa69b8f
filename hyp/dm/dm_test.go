package dm

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"

	"godm/hyp"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/privcmd"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

const dom = 7

func newClient(t *testing.T) (*Client, *kerneltest.Kernel, *privcmd.Handle) {
	t.Helper()
	k := kerneltest.New()
	p, err := privcmd.Open(k)
	if err != nil {
		t.Fatalf("privcmd.Open: %v", err)
	}
	t.Cleanup(func() { p.Close() })
	k.Reset()
	return New(p, dom), k, p
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// lastDMOp returns the DM-op buffers (after the privcmd_dm_op_buf array) of
// the last DM_OP ioctl, checking its dom and count.
func lastDMOp(t *testing.T, k *kerneltest.Kernel) []kerneltest.Buf {
	t.Helper()
	evs := k.Ioctls(xenabi.IOCTL_PRIVCMD_DM_OP)
	if len(evs) == 0 {
		t.Fatalf("no DM_OP ioctl")
	}
	ev := evs[len(evs)-1]
	if got := uint16(ev.Arg.In[0]) | uint16(ev.Arg.In[1])<<8; got != dom {
		t.Errorf("dom = %d, want %d", got, dom)
	}
	if len(ev.Bufs) < 2 {
		t.Fatalf("DM_OP without buffers")
	}
	return ev.Bufs[1:]
}

// The encodings below are struct xen_dm_op as libxendevicemodel builds it
// (tools/libs/devicemodel/core.c; layouts from xen/include/public/hvm/dm_op.h),
// written out by hand for the driver values of tools/xencapture.
func TestEncoding(t *testing.T) {
	tests := []struct {
		name  string
		call  func(c *Client) error
		want  string
		extra string // second buffer, "" for none
	}{
		{"create_ioreq_server", func(c *Client) error { _, err := c.CreateIOReqServer(2); return err },
			"01000000 00000000 02000000 00000000 00000000 00000000 00000000 00000000", ""},
		{"get_ioreq_server_info", func(c *Client) error { _, err := c.GetIOReqServerInfo(1, false); return err },
			"02000000 00000000 01000000 00000000 00000000 00000000 00000000 00000000", ""},
		{"get_ioreq_server_info_nogfns", func(c *Client) error { _, err := c.GetIOReqServerInfo(1, true); return err },
			"02000000 00000000 01000100 00000000 00000000 00000000 00000000 00000000", ""},
		{"map_io_range_port", func(c *Client) error { return c.MapIORange(1, PortRange, 0x3f8, 0x3ff) },
			"03000000 00000000 01000000 00000000 f8030000 00000000 ff030000 00000000", ""},
		{"map_io_range_mmio", func(c *Client) error { return c.MapIORange(1, MemoryRange, 0xfebf0000, 0xfebf0fff) },
			"03000000 00000000 01000000 01000000 0000bffe 00000000 ff0fbffe 00000000", ""},
		{"unmap_io_range_port", func(c *Client) error { return c.UnmapIORange(1, PortRange, 0x3f8, 0x3ff) },
			"04000000 00000000 01000000 00000000 f8030000 00000000 ff030000 00000000", ""},
		{"map_pcidev", func(c *Client) error { return c.MapPCIDev(1, 1, 2, 3, 4) },
			"03000000 00000000 01000000 02000000 1c020100 00000000 1c020100 00000000", ""},
		{"unmap_pcidev", func(c *Client) error { return c.UnmapPCIDev(1, 1, 2, 3, 4) },
			"04000000 00000000 01000000 02000000 1c020100 00000000 1c020100 00000000", ""},
		{"set_ioreq_server_state_on", func(c *Client) error { return c.SetIOReqServerState(1, true) },
			"05000000 00000000 01000100 00000000 00000000 00000000 00000000 00000000", ""},
		{"set_ioreq_server_state_off", func(c *Client) error { return c.SetIOReqServerState(1, false) },
			"05000000 00000000 01000000 00000000 00000000 00000000 00000000 00000000", ""},
		{"destroy_ioreq_server", func(c *Client) error { return c.DestroyIOReqServer(1) },
			"06000000 00000000 01000000 00000000 00000000 00000000 00000000 00000000", ""},
		{"track_dirty_vram", func(c *Client) error { return c.TrackDirtyVRAM(0xf0000, 100, make([]byte, 16)) },
			"07000000 00000000 64000000 00000000 00000f00 00000000 00000000 00000000",
			"00000000 00000000 00000000 00"},
		{"set_pci_intx_level", func(c *Client) error { return c.SetPCIIntxLevel(1, 2, 3, 2, true) },
			"08000000 00000000 01000203 02010000 00000000 00000000 00000000 00000000", ""},
		{"set_pci_intx_level_low", func(c *Client) error { return c.SetPCIIntxLevel(0, 0, 5, 0, false) },
			"08000000 00000000 00000005 00000000 00000000 00000000 00000000 00000000", ""},
		{"set_isa_irq_level", func(c *Client) error { return c.SetISAIRQLevel(4, true) },
			"09000000 00000000 04010000 00000000 00000000 00000000 00000000 00000000", ""},
		{"set_isa_irq_level_low", func(c *Client) error { return c.SetISAIRQLevel(12, false) },
			"09000000 00000000 0c000000 00000000 00000000 00000000 00000000 00000000", ""},
		{"set_pci_link_route", func(c *Client) error { return c.SetPCILinkRoute(2, 10) },
			"0a000000 00000000 020a0000 00000000 00000000 00000000 00000000 00000000", ""},
		{"modified_memory", func(c *Client) error { return c.ModifiedMemory(Extent{FirstPFN: 0x1000, Nr: 16}) },
			"0b000000 00000000 01000000 00000000 00000000 00000000 00000000 00000000",
			"10000000 00000000 00100000 00000000"},
		{"modified_memory_bulk", func(c *Client) error {
			return c.ModifiedMemory(Extent{FirstPFN: 0x1000, Nr: 16}, Extent{FirstPFN: 0x8000, Nr: 2})
		},
			"0b000000 00000000 02000000 00000000 00000000 00000000 00000000 00000000",
			"10000000 00000000 00100000 00000000 02000000 00000000 00800000 00000000"},
		{"set_mem_type", func(c *Client) error { return c.SetMemType(xenabi.HVMMEM_ram_ro, 0x2000, 4) },
			"0c000000 00000000 04000000 01000000 00200000 00000000 00000000 00000000", ""},
		{"inject_event", func(c *Client) error {
			return c.InjectEvent(Event{VCPU: 1, Vector: 14, Type: xenabi.XEN_DMOP_EVENT_hw_exc, ErrorCode: 2, CR2: 0xdeadb000})
		},
			"0d000000 00000000 01000000 0e030000 02000000 00000000 00b0adde 00000000", ""},
		{"inject_msi", func(c *Client) error { return c.InjectMSI(0xfee01000, 0x4041) },
			"0e000000 00000000 41400000 00000000 0010e0fe 00000000 00000000 00000000", ""},
		{"map_mem_type_to_ioreq_server", func(c *Client) error {
			return c.MapMemTypeToIOReqServer(1, xenabi.HVMMEM_ioreq_server, xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_WRITE)
		},
			"0f000000 00000000 01000400 02000000 00000000 00000000 00000000 00000000", ""},
		{"remote_shutdown", func(c *Client) error { return c.RemoteShutdown(xenabi.SHUTDOWN_reboot) },
			"10000000 00000000 01000000 00000000 00000000 00000000 00000000 00000000", ""},
		{"relocate_memory", func(c *Client) error { return c.RelocateMemory(8, 0x100, 0x200) },
			"11000000 00000000 08000000 00000000 00010000 00000000 00020000 00000000", ""},
		{"pin_memory_cacheattr", func(c *Client) error {
			return c.PinMemoryCacheattr(0xf0000, 0xf00ff, xenabi.XEN_DMOP_MEM_CACHEATTR_WC)
		},
			"12000000 00000000 00000f00 00000000 ff000f00 00000000 01000000 00000000", ""},
		{"set_irq_level", func(c *Client) error { return c.SetIRQLevel(33, true) },
			"13000000 00000000 21000000 01000000 00000000 00000000 00000000 00000000", ""},
		{"nr_vcpus", func(c *Client) error { _, err := c.NrVCPUs(); return err },
			"14000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, k, _ := newClient(t)
			if err := tt.call(c); err != nil {
				t.Fatalf("call: %v", err)
			}
			bufs := lastDMOp(t, k)
			if got, want := hex.EncodeToString(bufs[0].In), hex.EncodeToString(unhex(t, tt.want)); got != want {
				t.Errorf("xen_dm_op =\n got %s\nwant %s", got, want)
			}
			wantBufs := 1
			if tt.extra != "" {
				wantBufs = 2
			}
			if len(bufs) != wantBufs {
				t.Fatalf("%d DM-op buffers, want %d", len(bufs), wantBufs)
			}
			if tt.extra != "" {
				if got, want := hex.EncodeToString(bufs[1].In), hex.EncodeToString(unhex(t, tt.extra)); got != want {
					t.Errorf("second buffer =\n got %s\nwant %s", got, want)
				}
			}
		})
	}
}

func TestOutFields(t *testing.T) {
	c, _, _ := newClient(t)
	id, err := c.CreateIOReqServer(xenabi.HVM_IOREQSRV_BUFIOREQ_ATOMIC)
	if err != nil || id != 1 {
		t.Errorf("CreateIOReqServer = %d, %v; want 1, nil", id, err)
	}
	info, err := c.GetIOReqServerInfo(1, false)
	if want := (ServerInfo{BufIOReqPort: 33, IOReqGFN: 0xfeff0, BufIOReqGFN: 0xfeff1}); err != nil || info != want {
		t.Errorf("GetIOReqServerInfo = %+v, %v; want %+v", info, err, want)
	}
	info, err = c.GetIOReqServerInfo(1, true)
	if want := (ServerInfo{BufIOReqPort: 33}); err != nil || info != want {
		t.Errorf("GetIOReqServerInfo(noGFNs) = %+v, %v; want %+v", info, err, want)
	}
	n, err := c.NrVCPUs()
	if err != nil || n != 4 {
		t.Errorf("NrVCPUs = %d, %v; want 4, nil", n, err)
	}
	bitmap := make([]byte, 13)
	if err := c.TrackDirtyVRAM(0xf0000, 100, bitmap); err != nil {
		t.Fatalf("TrackDirtyVRAM: %v", err)
	}
	for i, b := range bitmap {
		if b != 0xa5 {
			t.Fatalf("bitmap[%d] = %#x, want 0xa5 written by the kernel", i, b)
		}
	}
}

func TestModifiedMemorySplit(t *testing.T) {
	c, k, _ := newClient(t)
	ext := make([]Extent, 300)
	for i := range ext {
		ext[i] = Extent{FirstPFN: uint64(i) << 8, Nr: uint32(i + 1)}
	}
	if err := c.ModifiedMemory(ext...); err != nil {
		t.Fatalf("ModifiedMemory: %v", err)
	}
	evs := k.Ioctls(xenabi.IOCTL_PRIVCMD_DM_OP)
	if len(evs) != 2 {
		t.Fatalf("%d DM ops, want 2", len(evs))
	}
	next := 0
	for i, want := range []int{256, 44} {
		op, buf := evs[i].Bufs[1].In, evs[i].Bufs[2].In
		if got := int(binary.LittleEndian.Uint32(op[8:])); got != want || len(buf) != want*extentSize {
			t.Fatalf("op %d: nr_extents %d, %d bytes; want %d extents", i, got, len(buf), want)
		}
		for j := 0; j < want; j++ {
			e := ext[next]
			next++
			if binary.LittleEndian.Uint32(buf[j*16:]) != e.Nr || binary.LittleEndian.Uint64(buf[j*16+8:]) != e.FirstPFN {
				t.Fatalf("op %d extent %d = %x, want %+v", i, j, buf[j*16:j*16+16], e)
			}
		}
	}
}

func TestTrackDirtyVRAMStop(t *testing.T) {
	// nr == 0 still passes a second (empty) buffer: Xen wants two.
	c, k, _ := newClient(t)
	if err := c.TrackDirtyVRAM(0, 0, nil); err != nil {
		t.Fatalf("TrackDirtyVRAM(0): %v", err)
	}
	evs := k.Ioctls(xenabi.IOCTL_PRIVCMD_DM_OP)
	ev := evs[len(evs)-1]
	if num := ev.Arg.In[2]; num != 2 {
		t.Fatalf("num = %d, want 2", num)
	}
	if got := hex.EncodeToString(ev.Bufs[0].In[16:]); got != strings.Repeat("0", 32) {
		t.Errorf("second privcmd_dm_op_buf = %s, want NULL with size 0", got)
	}
}

func TestBadArguments(t *testing.T) {
	c, k, _ := newClient(t)
	tests := map[string]func() error{
		"range end before start": func() error { return c.MapIORange(1, PortRange, 0x10, 0xf) },
		"unmap end before start": func() error { return c.UnmapIORange(1, MemoryRange, 0x10, 0x0) },
		"pci device 32":          func() error { return c.MapPCIDev(1, 0, 0, 32, 0) },
		"pci function 8":         func() error { return c.UnmapPCIDev(1, 0, 0, 0, 8) },
		"short bitmap":           func() error { return c.TrackDirtyVRAM(0, 100, make([]byte, 12)) },
		"no extents":             func() error { return c.ModifiedMemory() },
		"too many extents":       func() error { return c.ModifiedMemory(make([]Extent, maxExtents+1)...) },
		"mem type not ioreq":     func() error { return c.MapMemTypeToIOReqServer(1, xenabi.HVMMEM_ram_rw, 0) },
		"mem type read flag": func() error {
			return c.MapMemTypeToIOReqServer(1, xenabi.HVMMEM_ioreq_server, xenabi.XEN_DMOP_IOREQ_MEM_ACCESS_READ)
		},
	}
	for name, call := range tests {
		if err := call(); !errors.Is(err, unix.EINVAL) {
			t.Errorf("%s: %v, want EINVAL", name, err)
		}
	}
	if n := k.Count(xenabi.IOCTL_PRIVCMD_DM_OP); n != 0 {
		t.Errorf("bad arguments reached the kernel %d times", n)
	}
}

func TestErrorsWrapped(t *testing.T) {
	c, k, _ := newClient(t)
	k.Script = func(*kerneltest.Call) (uintptr, error) { return 0, unix.EPERM }
	_, err := c.CreateIOReqServer(2)
	if !errors.Is(err, unix.EPERM) {
		t.Fatalf("CreateIOReqServer = %v, want EPERM", err)
	}
	if got, want := err.Error(), "dm: create_ioreq_server dom7: operation not permitted"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	err = c.MapIORange(1, PortRange, 0x3f8, 0x3ff)
	if got, want := err.Error(), "dm: map_io_range_to_ioreq_server dom7: port range [0x3f8, 0x3ff]: operation not permitted"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if err := c.InjectMSI(0xfee00000, 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("InjectMSI = %v, want EPERM", err)
	}
}

func TestClosedHandle(t *testing.T) {
	c, _, p := newClient(t)
	p.Close()
	if err := c.SetISAIRQLevel(1, true); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("SetISAIRQLevel after Close = %v, want ErrClosed", err)
	}
	if _, err := c.NrVCPUs(); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("NrVCPUs after Close = %v, want ErrClosed", err)
	}
}

func TestFastPathZeroAlloc(t *testing.T) {
	c, k, _ := newClient(t)
	k.SetQuiet(true)
	tests := map[string]func() error{
		"SetPCIIntxLevel": func() error { return c.SetPCIIntxLevel(0, 0, 3, 0, true) },
		"SetISAIRQLevel":  func() error { return c.SetISAIRQLevel(4, true) },
		"SetIRQLevel":     func() error { return c.SetIRQLevel(33, false) },
		"InjectMSI":       func() error { return c.InjectMSI(0xfee00000, 0x41) },
	}
	for name, call := range tests {
		allocs := testing.AllocsPerRun(1000, func() {
			if err := call(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, allocs)
		}
	}
}

func TestConcurrent(t *testing.T) {
	c, k, _ := newClient(t)
	const goroutines, calls = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				var err error
				switch i % 3 {
				case 0:
					err = c.InjectMSI(0xfee00000, uint32(g))
				case 1:
					err = c.SetISAIRQLevel(uint8(g), i%2 == 0)
				default:
					var n uint32
					n, err = c.NrVCPUs()
					if err == nil && n != 4 {
						err = errors.New("NrVCPUs: torn OUT field")
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got, want := k.Count(xenabi.IOCTL_PRIVCMD_DM_OP), goroutines*calls; got != want {
		t.Errorf("%d DM ops, want %d", got, want)
	}
	// Every recorded op must be one of the three, intact.
	for _, ev := range k.Ioctls(xenabi.IOCTL_PRIVCMD_DM_OP) {
		op := ev.Bufs[1].In[0]
		if op != xenabi.XEN_DMOP_inject_msi && op != xenabi.XEN_DMOP_set_isa_irq_level && op != xenabi.XEN_DMOP_nr_vcpus {
			t.Fatalf("unexpected op %d", op)
		}
	}
}

func TestRangeKindString(t *testing.T) {
	for k, want := range map[RangeKind]string{PortRange: "port", MemoryRange: "memory", PCIRange: "pci", 9: "range-kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint32(k), got, want)
		}
	}
}

func TestEveryOpWrapsErrors(t *testing.T) {
	c, k, _ := newClient(t)
	k.Script = func(*kerneltest.Call) (uintptr, error) { return 0, unix.ESRCH }
	tests := []struct {
		op   string
		call func() error
	}{
		{"create_ioreq_server", func() error { _, err := c.CreateIOReqServer(0); return err }},
		{"get_ioreq_server_info", func() error { _, err := c.GetIOReqServerInfo(1, true); return err }},
		{"map_io_range_to_ioreq_server", func() error { return c.MapIORange(1, MemoryRange, 0, 0) }},
		{"unmap_io_range_from_ioreq_server", func() error { return c.UnmapIORange(1, MemoryRange, 0, 0) }},
		{"map_pcidev_to_ioreq_server", func() error { return c.MapPCIDev(1, 0, 0, 1, 0) }},
		{"unmap_pcidev_from_ioreq_server", func() error { return c.UnmapPCIDev(1, 0, 0, 1, 0) }},
		{"set_ioreq_server_state", func() error { return c.SetIOReqServerState(1, true) }},
		{"destroy_ioreq_server", func() error { return c.DestroyIOReqServer(1) }},
		{"track_dirty_vram", func() error { return c.TrackDirtyVRAM(0, 8, make([]byte, 1)) }},
		{"set_pci_intx_level", func() error { return c.SetPCIIntxLevel(0, 0, 1, 0, true) }},
		{"set_isa_irq_level", func() error { return c.SetISAIRQLevel(1, true) }},
		{"set_irq_level", func() error { return c.SetIRQLevel(1, true) }},
		{"set_pci_link_route", func() error { return c.SetPCILinkRoute(0, 5) }},
		{"modified_memory", func() error { return c.ModifiedMemory(Extent{FirstPFN: 1, Nr: 1}) }},
		{"set_mem_type", func() error { return c.SetMemType(xenabi.HVMMEM_ram_rw, 0, 1) }},
		{"inject_event", func() error { return c.InjectEvent(Event{Vector: 2, Type: xenabi.XEN_DMOP_EVENT_nmi}) }},
		{"inject_msi", func() error { return c.InjectMSI(0xfee00000, 0) }},
		{"map_mem_type_to_ioreq_server", func() error { return c.MapMemTypeToIOReqServer(1, xenabi.HVMMEM_ioreq_server, 0) }},
		{"remote_shutdown", func() error { return c.RemoteShutdown(xenabi.SHUTDOWN_poweroff) }},
		{"relocate_memory", func() error { return c.RelocateMemory(1, 0, 1) }},
		{"pin_memory_cacheattr", func() error { return c.PinMemoryCacheattr(0, 0, xenabi.XEN_DMOP_MEM_CACHEATTR_WB) }},
		{"nr_vcpus", func() error { _, err := c.NrVCPUs(); return err }},
	}
	for _, tt := range tests {
		err := tt.call()
		if !errors.Is(err, unix.ESRCH) {
			t.Errorf("%s = %v, want ESRCH", tt.op, err)
			continue
		}
		if prefix := "dm: " + tt.op + " dom7: "; !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%s error %q, want prefix %q", tt.op, err, prefix)
		}
	}
	if got := c.Dom(); got != dom {
		t.Errorf("Dom = %v, want dom%d", got, dom)
	}
}

// TestCloseWhileBusy closes the handle under concurrent fast-path calls:
// each call either succeeds or fails cleanly (ErrClosed, or EBADF from a
// file closed mid-call), without races or panics.
func TestCloseWhileBusy(t *testing.T) {
	c, _, p := newClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	start := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := 0; i < 500; i++ {
				err := c.InjectMSI(0xfee00000, uint32(i))
				if err != nil && !errors.Is(err, hyp.ErrClosed) && !errors.Is(err, unix.EBADF) {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("call during Close: %v", err)
	}
	if err := c.InjectMSI(0xfee00000, 0); !errors.Is(err, hyp.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
}
