package passthrough

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"godm/devices"
	"godm/hyp/domctl"
	"godm/hyp/xenabi"
)

func TestConfigReads(t *testing.T) {
	dev, _, _, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	tests := []struct {
		name string
		reg  uint32
		size uint8
		want uint64
	}{
		{"vendor/device from host", 0x00, 4, 0x10d38086},
		{"command emulated decode off, host bus master shown", 0x04, 2, 0x0004},
		{"status: capability list", 0x06, 2, 0x0010},
		{"class", 0x08, 4, 0x02000001},
		{"header type single-function", 0x0e, 1, 0x00},
		{"BAR0 unassigned", 0x10, 4, 0x0},
		{"BAR2 I/O unassigned", 0x18, 4, 0x1},
		{"BAR4 absent", 0x20, 4, 0},
		{"subsystem", 0x2c, 4, 0xa01f8086},
		{"ROM unassigned", 0x30, 4, 0},
		{"capability pointer skips VPD", 0x34, 1, 0xc8},
		{"interrupt pin", 0x3d, 1, 1},
		{"hidden VPD header", 0x40, 2, 0},
		{"PM: next MSI, PME support hidden", 0xc8, 4, 0x0023d001},
		{"MSI: next PCIe, 64-bit, masking hidden, disabled", 0xd0, 4, 0x00806005},
		{"MSI mask bits hidden", 0xe0, 4, 0},
		{"PCIe: next MSI-X", 0x60, 2, 0xa010},
		{"PCIe: FLR capability hidden", 0x64, 4, 0x00008cc1},
		{"MSI-X: next vendor, disabled, 5 entries", 0xa0, 4, 0x0004b011},
		{"MSI-X table BIR/offset from host", 0xa4, 4, 0x3},
		{"vendor: end of list", 0xb0, 4, 0x00080009},
		{"uncovered byte from host", 0xf0, 1, 0x77},
		{"extended space", 0x100, 4, 0},
		{"past the space", 0xffe, 4, 0xffffffff},
	}
	for _, tt := range tests {
		if got := c.r(tt.reg, tt.size); got != tt.want {
			t.Errorf("%s: read(%#x, %d) = %#x, want %#x", tt.name, tt.reg, tt.size, got, tt.want)
		}
	}
}

// TestConfigWrites checks what reaches the host for each kind of register.
func TestConfigWrites(t *testing.T) {
	tests := []struct {
		name       string
		permissive bool
		hostInit   func(h *HostDevice)
		reg        uint32
		size       uint8
		v          uint64
		hostReg    int64
		hostSize   int
		wantHost   uint64
		wantGuest  uint64 // read back at reg
		wantDrops  uint64
	}{
		{"vendor read-only", false, nil, 0x00, 2, 0x1234, 0x00, 2, 0x8086, 0x8086, 0},
		{"uncovered dropped", false, nil, 0xf0, 1, 0x12, 0xf0, 1, 0x77, 0x77, 1},
		{"uncovered permissive", true, nil, 0xf0, 1, 0x12, 0xf0, 1, 0x12, 0x12, 0},
		{"hidden never written", true, nil, 0x40, 2, 0xffff, 0x40, 2, 0xc803, 0, 0},
		{"reserved header bytes", true, nil, 0x35, 1, 0xff, 0x35, 1, 0, 0, 0},
		{"cache line emulated", false, nil, 0x0c, 1, 0x10, 0x0c, 1, 0, 0x10, 0},
		{"vendor capability length read-only", true, nil, 0xb2, 1, 0x20, 0xb2, 1, 0x08, 0x08, 0},
		{"vendor capability body dropped", false, nil, 0xb4, 1, 0x12, 0xb4, 1, 0x5a, 0x5a, 1},
		{"vendor capability body permissive", true, nil, 0xb4, 1, 0x12, 0xb4, 1, 0x12, 0x12, 0},
		// The fake config file keeps what was written: a 1 only in the
		// bit the guest clears, 0 in the other status bits.
		{"status write-1-to-clear one bit", false, func(h *HostDevice) {
			_, _ = h.Config.WriteAt([]byte{0x10, 0xf9}, 6)
		}, 0x06, 2, 0x0100, 0x06, 2, 0x0110, 0x0110, 0},
		{"command: bus master through, decode merged", false, nil, 0x04, 2, 0x0003, 0x04, 2, 0x0003, 0x0003, 0},
		{"command: reserved bits kept", false, nil, 0x04, 2, 0xf800, 0x04, 2, 0x0002, 0x0000, 0},
		{"PMCSR power state emulated, PME hidden", false, nil, 0xcc, 2, 0x8103, 0xcc, 2, 0x0008, 0x000b, 0},
		{"PMCSR data select through", false, nil, 0xcc, 2, 0x0200, 0xcc, 2, 0x0208, 0x0208, 0},
		{"PCIe device control emulated", false, nil, 0x68, 2, 0x0817, 0x68, 2, 0x2810, 0x0817, 0},
		{"PCIe devctl FLR never reaches the host", false, nil, 0x68, 2, 0xa810, 0x68, 2, 0x2810, 0x2810, 0},
		{"MSI address emulated", false, nil, 0xd4, 4, 0xfee01003, 0xd4, 4, 0, 0xfee01000, 0},
		{"MSI mask bits hidden", false, nil, 0xe0, 4, 0x1, 0xe0, 4, 0, 0, 0},
		{"MSI enable mirrored", false, nil, 0xd2, 2, 0x1, 0xd2, 2, 0x0181, 0x0081, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, _, _, h := plugged(t, synthetic(), tt.permissive)
			if tt.hostInit != nil {
				tt.hostInit(h)
			}
			c := cfgIO{dev}
			c.w(tt.reg, tt.size, tt.v)
			if got := hostCfg(t, h, tt.hostReg, tt.hostSize); got != tt.wantHost {
				t.Errorf("host %#x = %#x, want %#x", tt.hostReg, got, tt.wantHost)
			}
			if got := c.r(tt.reg, tt.size); got != tt.wantGuest {
				t.Errorf("guest reads %#x, want %#x", got, tt.wantGuest)
			}
			if got := dev.Stats().DroppedWrites; got != tt.wantDrops {
				t.Errorf("dropped writes = %d, want %d", got, tt.wantDrops)
			}
		})
	}
}

func TestCommandMergeKeepsHostDecoding(t *testing.T) {
	dev, _, _, h := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x04, 2, 0x0007)
	c.w(0x04, 2, 0x0000)
	if got := hostCfg(t, h, 4, 2); got != 0x0003 {
		t.Errorf("host command = %#x, want 0x3 (decoding kept, bus master off)", got)
	}
	if got := c.r(0x04, 2); got != 0 {
		t.Errorf("guest command = %#x, want 0", got)
	}
}

func TestBARSizing(t *testing.T) {
	dev, _, _, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	tests := []struct {
		reg  uint32
		want uint64
	}{
		{0x10, 0xfffe0000}, // 128K memory
		{0x18, 0xffffffe1}, // 32 ports
		{0x1c, 0xffffc000}, // 16K memory
		{0x20, 0},          // absent
		{0x30, 0xffff0000}, // 64K ROM (enable bit is not sticky to sizing)
	}
	for _, tt := range tests {
		v := uint64(0xffffffff)
		if tt.reg == 0x30 {
			v = 0xfffff800
		}
		c.w(tt.reg, 4, v)
		if got := c.r(tt.reg, 4); got != tt.want {
			t.Errorf("BAR %#x sized = %#x, want %#x", tt.reg, got, tt.want)
		}
	}
}

func TestBARMappings(t *testing.T) {
	dev, x, bus, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x10, 4, 0xe0000000)
	c.w(0x18, 4, 0xc000)
	c.w(0x1c, 4, 0xe0100000)
	if n := len(x.since(2)); n != 0 { // after INTx map+bind
		t.Fatalf("mapped before decoding was enabled: %v", x.since(2))
	}
	mark := x.count()
	c.w(0x04, 2, 0x0007)
	want := []call{
		{op: "memory_mapping", g: 0xe0000, m: 0xf7c00, nr: 32, add: true},
		{op: "ioport_mapping", g: 0xc000, m: 0xe000, nr: 32, add: true},
		{op: "memory_mapping", g: 0xe0101, m: 0xf7c21, nr: 1, add: true}, // table page 0 and PBA page 2 trapped
		{op: "memory_mapping", g: 0xe0103, m: 0xf7c23, nr: 1, add: true},
	}
	checkCalls(t, x.since(mark), want)
	if r := bus.MMIO.Ranges(); len(r) != 2 || r[0].Base != 0xe0100000 || r[0].Size != 0x1000 || r[1].Base != 0xe0102000 {
		t.Errorf("trapped ranges = %+v, want the table and PBA pages", r)
	}
	// Move BAR0: unmap, map at the new place.
	mark = x.count()
	c.w(0x10, 4, 0xe0200000)
	checkCalls(t, x.since(mark), []call{
		{op: "memory_mapping", g: 0xe0000, m: 0xf7c00, nr: 32, add: false},
		{op: "memory_mapping", g: 0xe0200, m: 0xf7c00, nr: 32, add: true},
	})
	// Sizing while decoding: unmapped, then back.
	mark = x.count()
	c.w(0x10, 4, 0xffffffff)
	c.w(0x10, 4, 0xe0200000)
	checkCalls(t, x.since(mark), []call{
		{op: "memory_mapping", g: 0xe0200, m: 0xf7c00, nr: 32, add: false},
		{op: "memory_mapping", g: 0xe0200, m: 0xf7c00, nr: 32, add: true},
	})
	// Memory decoding off: every memory BAR unmapped, the I/O BAR stays.
	mark = x.count()
	c.w(0x04, 2, 0x0005)
	checkCalls(t, x.since(mark), []call{
		{op: "memory_mapping", g: 0xe0200, m: 0xf7c00, nr: 32, add: false},
		{op: "memory_mapping", g: 0xe0101, m: 0xf7c21, nr: 1, add: false},
		{op: "memory_mapping", g: 0xe0103, m: 0xf7c23, nr: 1, add: false},
	})
	if r := bus.MMIO.Ranges(); len(r) != 0 {
		t.Errorf("trapped ranges after disable = %+v", r)
	}
	if got := dev.Mappings(); len(got) != 1 || !got[0].IO {
		t.Errorf("Mappings = %+v, want the I/O BAR only", got)
	}
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	x.leftovers(t)
	if err := dev.Unplug(); err != nil {
		t.Errorf("second Unplug: %v", err)
	}
}

func TestROMReadOnly(t *testing.T) {
	dev, x, bus, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x30, 4, 0xe1000001)
	c.w(0x04, 2, 0x0002)
	if got := bus.MMIO.Read(0xe1000000, 2, 0); got != 0xaa55 {
		t.Errorf("ROM signature = %#x, want 0xaa55", got)
	}
	bus.MMIO.Write(0xe1000000, 2, 0, 0)
	if got := bus.MMIO.Read(0xe1000000, 2, 0); got != 0xaa55 {
		t.Errorf("ROM after write = %#x, want 0xaa55", got)
	}
	if got := bus.MMIO.Read(0xe1000900, 4, 0); got != 0 {
		t.Errorf("ROM past the image = %#x, want 0", got)
	}
	for _, cl := range x.since(0) {
		if cl.op == "memory_mapping" && cl.m>>4 == 0xf7b0 {
			t.Errorf("ROM mapped: %v", cl)
		}
	}
	c.w(0x30, 4, 0xe1000000) // disable
	if got := bus.MMIO.Read(0xe1000000, 2, 0); got != 0xffff {
		t.Errorf("disabled ROM reads %#x, want all-ones", got)
	}
}

func TestINTx(t *testing.T) {
	dev, x, _, h := plugged(t, synthetic(), false)
	checkCalls(t, x.since(0), []call{
		{op: "map_pirq", pirq: 17},
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.PCI, MachineIRQ: 17, Device: 4, Intx: 0}},
	})
	if got := hostCfg(t, h, 4, 2); got&cmdINTxDisable != 0 {
		t.Errorf("host INTx disabled although bound")
	}
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	x.leftovers(t)
}

func TestINTxBindFailure(t *testing.T) {
	h := openHost(t, synthetic())
	x := newFakeXen()
	x.fail = func(op string) error {
		if op == "bind" {
			return errBoom
		}
		return nil
	}
	dev, err := New(Config{Dom: 5, Host: h, Xen: x, Slot: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Plug(devices.NewBus()); err != nil {
		t.Fatal(err)
	}
	defer dev.Unplug()
	if got := hostCfg(t, h, 4, 2); got&cmdINTxDisable == 0 {
		t.Errorf("host command %#x: INTx not disabled after the binding failed", got)
	}
	c := cfgIO{dev}
	if got := c.r(0x3d, 1); got != 0 {
		t.Errorf("guest interrupt pin = %d, want 0", got)
	}
	c.w(0x04, 2, 0x0002) // the guest clears INTx disable: stays set on the host
	if got := hostCfg(t, h, 4, 2); got&cmdINTxDisable == 0 {
		t.Errorf("guest re-enabled host INTx")
	}
	x.fail = nil
	_ = dev.Unplug()
	x.leftovers(t)
}

func TestMSI(t *testing.T) {
	dev, x, _, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0xd4, 4, 0xfee01000) // destination 1
	c.w(0xd8, 4, 0)
	c.w(0xdc, 2, 0x0041) // vector 0x41, fixed, edge
	if n := x.count(); n != 2 {
		t.Fatalf("routed before enable: %v", x.since(2))
	}
	mark := x.count()
	c.w(0xd2, 2, 0x0001)
	flags := uint32(1 | xenabi.XEN_DOMCTL_VMSI_X86_UNMASKED)
	got := x.since(mark)
	checkCalls(t, got, []call{
		{op: "map_pirq", pirq: 100},
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 100, GVec: 0x41, GFlags: flags}},
	})
	if len(got) > 0 {
		r := got[0].req
		if r.Type != xenabi.MAP_PIRQ_TYPE_MSI || r.Index != -1 || r.PIRQ != -1 || r.Bus != 3 || r.Devfn != 0 || r.TableBase != 0 {
			t.Errorf("map_pirq request = %+v", r)
		}
	}
	if got := c.r(0xd2, 2); got != 0x0081 {
		t.Errorf("MSI control = %#x, want 0x81", got)
	}
	// New vector while enabled: rebind, same PIRQ.
	mark = x.count()
	c.w(0xdc, 2, 0x8142) // vector 0x42, lowest priority, level
	checkCalls(t, x.since(mark), []call{
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 100, GVec: 0x42,
			GFlags: flags | 1<<12 | xenabi.XEN_DOMCTL_VMSI_X86_TRIG_MASK}},
	})
	mark = x.count()
	c.w(0xd2, 2, 0)
	checkCalls(t, x.since(mark), []call{
		{op: "unbind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 100, GVec: 0x42,
			GFlags: flags | 1<<12 | xenabi.XEN_DOMCTL_VMSI_X86_TRIG_MASK}},
		{op: "unmap_pirq", pirq: 100},
	})
}

func TestMSIGFlags(t *testing.T) {
	tests := []struct {
		addr     uint64
		data     uint32
		unmasked bool
		want     uint32
	}{
		{0xfee00000, 0x30, false, 0},
		{0xfee0f00c, 0x30, false, 0x0f | xenabi.XEN_DOMCTL_VMSI_X86_RH_MASK | xenabi.XEN_DOMCTL_VMSI_X86_DM_MASK},
		{0xfee00000, 0x8530, true, 5<<12 | xenabi.XEN_DOMCTL_VMSI_X86_TRIG_MASK | xenabi.XEN_DOMCTL_VMSI_X86_UNMASKED},
	}
	for _, tt := range tests {
		if got := msiGFlags(tt.addr, tt.data, tt.unmasked); got != tt.want {
			t.Errorf("msiGFlags(%#x, %#x, %v) = %#x, want %#x", tt.addr, tt.data, tt.unmasked, got, tt.want)
		}
	}
	if got := msiPIRQ(0x100_0000_0000|0xfee05000, 0); got != 0x105 {
		t.Errorf("msiPIRQ for vector 0 = %#x, want 0x105", got)
	}
	if got := msiPIRQ(0xfee05000, 0x30); got != -1 {
		t.Errorf("msiPIRQ with a vector = %d, want -1", got)
	}
}

func TestMSIX(t *testing.T) {
	for _, all := range []bool{false, true} {
		t.Run(fmt.Sprintf("msix_all_writes=%v", all), func(t *testing.T) { testMSIX(t, all) })
	}
}

func testMSIX(t *testing.T, allWrites bool) {
	dev, x, bus, h := plugged(t, synthetic(), false)
	dev.mu.Lock()
	dev.cfg.MSIXAllWrites = allWrites
	dev.mu.Unlock()
	c := cfgIO{dev}
	c.w(0x1c, 4, 0xe0100000)
	c.w(0x04, 2, 0x0006)
	tbl := uint64(0xe0100000)
	// Entry 0 programmed and unmasked before MSI-X is enabled: nothing yet.
	bus.MMIO.Write(tbl+0, 4, 0, 0xfee00000)
	bus.MMIO.Write(tbl+4, 4, 0, 0)
	bus.MMIO.Write(tbl+8, 4, 0, 0x51)
	bus.MMIO.Write(tbl+12, 4, 0, 0)
	mark := x.count()
	c.w(0xa2, 2, 0x8000)
	unm := uint32(xenabi.XEN_DOMCTL_VMSI_X86_UNMASKED)
	got := x.since(mark)
	checkCalls(t, got, []call{
		{op: "map_pirq", pirq: 100},
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 100, GVec: 0x51, GFlags: unm, GTable: tbl}},
	})
	if len(got) > 0 && (got[0].req.EntryNr != 0 || got[0].req.TableBase != 0xf7c20000) {
		t.Errorf("map_pirq request = %+v, want entry 0, table 0xf7c20000", got[0].req)
	}
	if v := hostCfg(t, h, 0xa2, 2); v&0xc000 != 0x8000 {
		t.Errorf("host MSI-X control = %#x, want enable mirrored", v)
	}
	// Entry 1 via 8-byte writes, then unmasked.
	mark = x.count()
	bus.MMIO.Write(tbl+16, 8, 0, 0xfee01000)
	bus.MMIO.Write(tbl+24, 8, 0, 0x52)
	checkCalls(t, x.since(mark), []call{
		{op: "map_pirq", pirq: 101},
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 101, GVec: 0x52, GFlags: 1 | unm, GTable: tbl}},
	})
	if v := bus.MMIO.Read(tbl+16, 8, 0); v != 0xfee01000 {
		t.Errorf("entry 1 address = %#x", v)
	}
	// Mask entry 0, reprogram, unmask: rebind on the same PIRQ.
	mark = x.count()
	bus.MMIO.Write(tbl+12, 4, 0, 1)
	bus.MMIO.Write(tbl+8, 4, 0, 0x61)
	if n := len(x.since(mark)); n != 0 {
		t.Errorf("masking or reprogramming a masked entry made calls: %v", x.since(mark))
	}
	bus.MMIO.Write(tbl+12, 4, 0, 0)
	checkCalls(t, x.since(mark), []call{
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 100, GVec: 0x61, GFlags: unm, GTable: tbl}},
	})
	// Reprogramming an entry godm sees unmasked: with all writes
	// forwarded the mask state is exact and the write is refused; without,
	// Xen may have masked it behind godm's back, so the change is latched
	// for the next unmasking write.
	mark = x.count()
	bus.MMIO.Write(tbl+8, 4, 0, 0x99)
	data0 := uint64(0x61)
	if !allWrites {
		data0 = 0x99
	}
	if v := bus.MMIO.Read(tbl+8, 4, 0); v != data0 {
		t.Errorf("unmasked entry data = %#x, want %#x", v, data0)
	}
	if n := len(x.since(mark)); n != 0 {
		t.Errorf("reprogramming made calls: %v", x.since(mark))
	}
	bus.MMIO.Write(tbl+12, 4, 0, 0) // the unmasking write Xen forwards
	if !allWrites {
		checkCalls(t, x.since(mark), []call{
			{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 100, GVec: 0x99, GFlags: unm, GTable: tbl}},
		})
	} else if n := len(x.since(mark)); n != 0 {
		t.Errorf("unmasking an unchanged bound entry made calls: %v", x.since(mark))
	}
	mark = x.count()
	// Function mask holds entry 2 back until cleared.
	bus.MMIO.Write(tbl+32, 4, 0, 0xfee00000)
	bus.MMIO.Write(tbl+40, 4, 0, 0x53)
	c.w(0xa2, 2, 0xc000)
	bus.MMIO.Write(tbl+44, 4, 0, 0)
	if n := len(x.since(mark)); n != 0 {
		t.Errorf("function-masked entry routed: %v", x.since(mark))
	}
	c.w(0xa2, 2, 0x8000)
	checkCalls(t, x.since(mark), []call{
		{op: "map_pirq", pirq: 102},
		{op: "bind", b: domctl.IRQBinding{Kind: domctl.MSI, MachineIRQ: 102, GVec: 0x53, GFlags: unm, GTable: tbl}},
	})
	// Table BAR moves: bindings follow with the new table address.
	mark = x.count()
	c.w(0x1c, 4, 0xe0200000)
	var rebinds []uint64
	for _, cl := range x.since(mark) {
		if cl.op == "bind" {
			rebinds = append(rebinds, cl.b.GTable)
		}
	}
	if len(rebinds) != 3 || rebinds[0] != 0xe0200000 {
		t.Errorf("rebinds after the move: gtables %#x, want 3 at 0xe0200000", rebinds)
	}
	if v := bus.MMIO.Read(0xe0200000+8, 4, 0); v != data0 {
		t.Errorf("table at the new place: entry 0 data = %#x", v)
	}
	// Disable: everything unbound and unmapped.
	mark = x.count()
	c.w(0xa2, 2, 0)
	var unb, unm2 []int
	for _, cl := range x.since(mark) {
		switch cl.op {
		case "unbind":
			unb = append(unb, int(cl.b.MachineIRQ))
		case "unmap_pirq":
			unm2 = append(unm2, cl.pirq)
		}
	}
	slices.Sort(unb)
	slices.Sort(unm2)
	if !slices.Equal(unb, []int{100, 101, 102}) || !slices.Equal(unm2, []int{100, 101, 102}) {
		t.Errorf("disable: unbound %v, unmapped %v, want 100-102 each", unb, unm2)
	}
	// PBA and bytes outside the table: 0, counted.
	if v := bus.MMIO.Read(0xe0202000, 4, 0); v != 0 {
		t.Errorf("PBA read %#x, want 0", v)
	}
	if dev.Stats().TrapMisses == 0 {
		t.Errorf("PBA read not counted")
	}
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	x.leftovers(t)
}

func TestUnplugUndoesEverything(t *testing.T) {
	dev, x, bus, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x10, 4, 0xe0000000)
	c.w(0x18, 4, 0xc000)
	c.w(0x1c, 4, 0xe0100000)
	c.w(0x30, 4, 0xe1000001)
	c.w(0x04, 2, 0x0007)
	c.w(0xd4, 4, 0xfee00000)
	c.w(0xdc, 2, 0x41)
	c.w(0xd2, 2, 1)
	bus.MMIO.Write(0xe0100008, 4, 0, 0x51)
	bus.MMIO.Write(0xe010000c, 4, 0, 0)
	c.w(0xa2, 2, 0x8000)
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	x.leftovers(t)
	if r := bus.MMIO.Ranges(); len(r) != 0 {
		t.Errorf("MMIO ranges left: %+v", r)
	}
	if f := bus.PCI.Functions(); len(f) != 0 {
		t.Errorf("functions left: %v", f)
	}
}

// TestRealSampleVirtio: a real virtio-net function (vendor capabilities
// and MSI-X in a 64-bit BAR above 4G).
func TestRealSampleVirtio(t *testing.T) {
	s := loadSample(t, "0000_00_03.0")
	dev, x, bus, _ := plugged(t, s, false)
	c := cfgIO{dev}
	// The list is kept (all supported): 0x40 ... 0x98.
	var chain []uint64
	for p := c.r(0x34, 1); p != 0 && len(chain) < 10; p = c.r(uint32(p)+1, 1) {
		chain = append(chain, p)
	}
	if !slices.Equal(chain, []uint64{0x40, 0x50, 0x60, 0x70, 0x84, 0x98}) {
		t.Errorf("capability chain = %#x", chain)
	}
	c.w(0x10, 4, 0xffffffff)
	c.w(0x14, 4, 0xffffffff)
	if lo, hi := c.r(0x10, 4), c.r(0x14, 4); lo != 0xfff80004 || hi != 0xffffffff {
		t.Errorf("64-bit BAR0 sized = %#x:%#x, want 0xffffffff:0xfff80004", hi, lo)
	}
	c.w(0x10, 4, 0x00000000)
	c.w(0x14, 4, 0x8)
	mark := x.count()
	c.w(0x04, 2, 0x0006)
	// 512K BAR: table page 8 and PBA page 0x48 trapped.
	checkCalls(t, x.since(mark), []call{
		{op: "memory_mapping", g: 0x800000, m: 0x4000100, nr: 8, add: true},
		{op: "memory_mapping", g: 0x800009, m: 0x4000109, nr: 0x3f, add: true},
		{op: "memory_mapping", g: 0x800049, m: 0x4000149, nr: 0x37, add: true},
	})
	if r := bus.MMIO.Ranges(); len(r) != 2 {
		t.Errorf("trapped = %+v", r)
	}
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	x.leftovers(t)
}

// checkCalls compares operations, ignoring the map_pirq request details
// (checked separately).
func checkCalls(t *testing.T, got, want []call) {
	t.Helper()
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		g, w := got[i], want[i]
		same = g.op == w.op && g.b == w.b && g.pirq == w.pirq && g.g == w.g && g.m == w.m && g.nr == w.nr && g.add == w.add
	}
	if !same {
		t.Errorf("calls:\n got %v\nwant %v", got, want)
	}
}

// TestUnplugGoesOnPastErrors: a failing unbind does not stop the unmaps.
func TestUnplugGoesOnPastErrors(t *testing.T) {
	dev, x, _, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x10, 4, 0xe0000000)
	c.w(0x04, 2, 0x0002)
	c.w(0xd4, 4, 0xfee00000)
	c.w(0xdc, 2, 0x41)
	c.w(0xd2, 2, 1)
	x.fail = func(op string) error {
		if op == "unbind" {
			return errBoom
		}
		return nil
	}
	err := dev.Unplug()
	if err == nil {
		t.Fatal("Unplug reported no error")
	}
	x.mu.Lock()
	pirqs, mem := len(x.pirqs), len(x.mem)
	x.mu.Unlock()
	if pirqs != 0 || mem != 0 {
		t.Errorf("after a failed unbind: %d pirqs, %d frames still mapped", pirqs, mem)
	}
}

// TestMSIMapFailure: a PIRQ that cannot be mapped leaves MSI unrouted,
// counted, and a later enable retries.
func TestMSIMapFailure(t *testing.T) {
	dev, x, _, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	x.fail = func(op string) error {
		if op == "map_pirq" {
			return errBoom
		}
		return nil
	}
	c.w(0xd4, 4, 0xfee00000)
	c.w(0xdc, 2, 0x41)
	c.w(0xd2, 2, 1)
	if got := dev.Stats().MapErrors; got != 1 {
		t.Errorf("MapErrors = %d, want 1", got)
	}
	x.fail = nil
	c.w(0xd2, 2, 0)
	c.w(0xd2, 2, 1)
	x.mu.Lock()
	bound := len(x.bound)
	x.mu.Unlock()
	if bound != 2 { // INTx and MSI
		t.Errorf("%d bindings after the retry, want 2", bound)
	}
}

// TestMSIXInIOBARHidden: an MSI-X table the device model cannot trap (in
// an I/O BAR) hides the capability instead of exposing a broken one.
func TestMSIXInIOBARHidden(t *testing.T) {
	s := synthetic()
	s.config = append([]byte(nil), s.config...)
	s.config[0xa4] = 0x02 // table in BAR2, the I/O BAR
	dev, _, _, _ := plugged(t, s, false)
	c := cfgIO{dev}
	if got := c.r(0x61, 1); got != 0xb0 {
		t.Errorf("PCIe next = %#x, want 0xb0 (MSI-X skipped)", got)
	}
	if got := c.r(0xa0, 4); got != 0 {
		t.Errorf("hidden MSI-X reads %#x", got)
	}
	if dev.msix != nil {
		t.Errorf("MSI-X state kept")
	}
}

// TestMSIXTableAccessNoAlloc: mask and unmask of a bound vector (frequent
// in guests' interrupt handling) and table reads do not allocate.
func TestMSIXTableAccessNoAlloc(t *testing.T) {
	dev, _, bus, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x1c, 4, 0xe0100000)
	c.w(0x04, 2, 0x0002)
	bus.MMIO.Write(0xe0100000, 4, 0, 0xfee00000)
	bus.MMIO.Write(0xe0100008, 4, 0, 0x51)
	bus.MMIO.Write(0xe010000c, 4, 0, 0)
	c.w(0xa2, 2, 0x8000)
	n := testing.AllocsPerRun(100, func() {
		bus.MMIO.Write(0xe010000c, 4, 0, 1)
		bus.MMIO.Write(0xe010000c, 4, 0, 0)
		_ = bus.MMIO.Read(0xe0100008, 4, 0)
	})
	if n != 0 {
		t.Errorf("%v allocations per mask/unmask/read", n)
	}
}

// TestHostMSIXQuiescedAtPlug: the real virtio sample was captured with
// MSI-X enabled by its host driver; plugging turns it off on the host.
func TestHostMSIXQuiescedAtPlug(t *testing.T) {
	s := loadSample(t, "0000_00_03.0")
	if s.config[0x9b]&0x80 == 0 {
		t.Fatalf("sample has MSI-X disabled; the test needs it enabled")
	}
	dev, _, _, h := plugged(t, s, false)
	if got := hostCfg(t, h, 0x9a, 2); got&0x8000 != 0 {
		t.Errorf("host MSI-X control = %#x after Plug, want enable clear", got)
	}
	if got := (cfgIO{dev}).r(0x9a, 2); got != 0x0002 {
		t.Errorf("guest MSI-X control = %#x, want 0x2 (3 entries, disabled)", got)
	}
}

// TestMSIEnableOrder: QEMU's order: the vector is routed before the
// device's MSI enable is set, and torn down before it is cleared.
func TestMSIEnableOrder(t *testing.T) {
	h, m := fuzzHost(false)
	x := newFakeXen()
	var enabledAtBind, enabledAtUnbind []bool
	x.fail = func(op string) error {
		en := m.b[0xd2]&1 != 0
		switch op {
		case "bind":
			enabledAtBind = append(enabledAtBind, en)
		case "unbind":
			enabledAtUnbind = append(enabledAtUnbind, en)
		}
		return nil
	}
	dev, err := New(Config{Dom: 5, Host: h, Xen: x, Slot: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := dev.Plug(devices.NewBus()); err != nil {
		t.Fatal(err)
	}
	c := cfgIO{dev}
	c.w(0xd4, 4, 0xfee00000)
	c.w(0xdc, 2, 0x41)
	c.w(0xd2, 2, 1)
	if m.b[0xd2]&1 == 0 {
		t.Errorf("MSI not enabled on the host")
	}
	c.w(0xd2, 2, 0)
	if m.b[0xd2]&1 != 0 {
		t.Errorf("MSI still enabled on the host")
	}
	_ = dev.Unplug()
	// bind #0 is INTx.
	if len(enabledAtBind) != 2 || enabledAtBind[1] {
		t.Errorf("host MSI enable at the MSI binding: %v, want off", enabledAtBind)
	}
	if len(enabledAtUnbind) < 1 || !enabledAtUnbind[0] {
		t.Errorf("host MSI enable at the MSI unbinding: %v, want still on", enabledAtUnbind)
	}
}

// TestLateAccessAfterUnplug: a guest access that raced with Unplug (the
// bus may still complete it on the old handler) reaches neither the host
// nor the hypervisor.
func TestLateAccessAfterUnplug(t *testing.T) {
	h, m := fuzzHost(false)
	x := newFakeXen()
	dev, err := New(Config{Dom: 5, Host: h, Xen: x, Slot: 4})
	if err != nil {
		t.Fatal(err)
	}
	bus := devices.NewBus()
	if err := dev.Plug(bus); err != nil {
		t.Fatal(err)
	}
	c := cfgIO{dev}
	c.w(0x1c, 4, 0xe0100000)
	c.w(0x04, 2, 0x0002)
	var trap devices.Handler
	for _, r := range bus.MMIO.Ranges() {
		trap = r.Handler
	}
	if trap == nil {
		t.Fatal("no MSI-X trap registered")
	}
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	writes, calls := m.writes, x.count()
	c.w(0x04, 2, 0x0007)
	c.w(0xd2, 2, 1)
	trap.Write(devices.Access{Offset: 8, Size: 4}, 0x51)
	trap.Write(devices.Access{Offset: 12, Size: 4}, 0)
	if got := c.r(0, 4); got != 0xffffffff {
		t.Errorf("late read = %#x, want all-ones", got)
	}
	if m.writes != writes || x.count() != calls {
		t.Errorf("late accesses made %d host writes and %d hypercalls", m.writes-writes, x.count()-calls)
	}
	x.leftovers(t)
}

// TestOverlapWarning: a BAR placed over an emulated device's range is
// mapped (the guest asked for it) with a warning.
func TestOverlapWarning(t *testing.T) {
	h := openHost(t, synthetic())
	var log strings.Builder
	x := newFakeXen()
	dev, err := New(Config{Dom: 5, Host: h, Xen: x, Slot: 4, Log: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	bus := devices.NewBus()
	if err := bus.MMIO.Register(0xe0001000, 0x100, romHandler{}); err != nil {
		t.Fatal(err)
	}
	if err := dev.Plug(bus); err != nil {
		t.Fatal(err)
	}
	defer dev.Unplug()
	c := cfgIO{dev}
	c.w(0x10, 4, 0xe0000000)
	c.w(0x04, 2, 0x0002)
	if !strings.Contains(log.String(), "hides") {
		t.Errorf("no overlap warning; log: %q", log.String())
	}
	if got := dev.Mappings(); len(got) != 1 {
		t.Errorf("Mappings = %+v", got)
	}
}

// TestReplugStartsClean: a Device plugged again after Unplug shows the
// guest a function in its power-on state, with nothing mapped.
func TestReplugStartsClean(t *testing.T) {
	dev, x, bus, _ := plugged(t, synthetic(), false)
	c := cfgIO{dev}
	c.w(0x10, 4, 0xe0000000)
	c.w(0x04, 2, 0x0002)
	c.w(0x3c, 1, 11)
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Plug(bus); err != nil {
		t.Fatal(err)
	}
	if got := c.r(0x10, 4); got != 0 {
		t.Errorf("BAR0 after re-plug = %#x, want 0", got)
	}
	if got := c.r(0x04, 2) & cmdMemory; got != 0 {
		t.Errorf("memory decoding after re-plug")
	}
	if got := c.r(0x3c, 1); got != 0 {
		t.Errorf("interrupt line after re-plug = %d", got)
	}
	if got := dev.Mappings(); len(got) != 0 {
		t.Errorf("Mappings after re-plug = %+v", got)
	}
	if err := dev.Unplug(); err != nil {
		t.Fatal(err)
	}
	x.leftovers(t)
}
