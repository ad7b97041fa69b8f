package pciserial

import (
	"errors"
	"os/exec"
	"testing"

	"godm/devices"
	"godm/devices/uart"
	"godm/internal/qtest"
	"godm/internal/testfake"
	"godm/pci"
)

func newBus(t *testing.T) (*devices.Bus, *Device, devices.SBDF, *testfake.Recorder) {
	t.Helper()
	spaces := devices.NewBus()
	l := &testfake.Recorder{}
	bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: testfake.AllPins{Line: l}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(uart.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	sbdf, err := bus.Add(d.PCI, 3, 0)
	if err != nil {
		t.Fatal(err)
	}
	return spaces, d, sbdf, l
}

func TestPCISerial_Config(t *testing.T) {
	spaces, _, sbdf, _ := newBus(t)
	for _, tc := range []struct {
		reg  uint32
		want uint64
	}{
		{0x00, 0x00021b36},
		{0x08, 0x07000201},
		{0x0c, 0x00000000},
		{0x10, 0x00000001},
		{0x2c, 0x11001af4},
		{0x3c, 0x00000100},
	} {
		if got := spaces.PCI.Read(sbdf, tc.reg, 4, 0); got != tc.want {
			t.Errorf("config[%#x] = %#x, want %#x", tc.reg, got, tc.want)
		}
	}
}

func TestPCISerial_BARAndINTx(t *testing.T) {
	spaces, _, sbdf, l := newBus(t)
	spaces.PCI.Write(sbdf, 0x10, 4, 0, 0xffffffff)
	if got, want := spaces.PCI.Read(sbdf, 0x10, 4, 0), uint64(0xfffffff9); got != want {
		t.Errorf("BAR0 size mask = %#x, want %#x", got, want)
	}
	spaces.PCI.Write(sbdf, 0x10, 4, 0, 0xc000)
	spaces.PCI.Write(sbdf, 0x04, 2, 0, 0x0001) // I/O decode
	if got, want := spaces.PIO.Read(0xc005, 1, 0), uint64(0x60); got != want {
		t.Errorf("LSR through BAR0 = %#x, want %#x", got, want)
	}
	spaces.PIO.Write(0xc001, 1, 0, 0x02) // IER = THRE
	if !l.Level() {
		t.Error("INTx low with THRE interrupt pending")
	}
	if got := spaces.PCI.Read(sbdf, 0x04, 4, 0) >> 16; got&0x08 == 0 {
		t.Errorf("status = %#x, want interrupt status bit set", got)
	}
	spaces.PIO.Read(0xc002, 1, 0) // IIR read clears THRE
	if l.Level() {
		t.Error("INTx high after the IIR read cleared THRE")
	}
}

// TestQEMUDiff_PCISerialConfig compares the configuration header and BAR
// sizing with QEMU's pci-serial at 00:03.0.
func TestQEMUDiff_PCISerialConfig(t *testing.T) {
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	c, err := qtest.Start(qtest.Options{Args: []string{
		"-chardev", "null,id=c0", "-device", "pci-serial,chardev=c0,addr=3"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spaces, _, sbdf, _ := newBus(t)

	qemuCfg := func(reg uint32) uint64 {
		if _, err := c.Out(0xcf8, 4, uint64(0x80000000|3<<11|reg)); err != nil {
			t.Fatal(err)
		}
		v, _, err := c.In(0xcfc, 4)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	qemuWrite := func(reg uint32, v uint64) {
		if _, err := c.Out(0xcf8, 4, uint64(0x80000000|3<<11|reg)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Out(0xcfc, 4, v); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string) {
		for reg := uint32(0); reg < 0x40; reg += 4 {
			want := qemuCfg(reg)
			if got := spaces.PCI.Read(sbdf, reg, 4, 0); got != want {
				t.Errorf("%s: config[%#02x] = %#08x, QEMU %#08x", what, reg, got, want)
			}
		}
	}
	check("reset")
	for reg := uint32(0x10); reg <= 0x24; reg += 4 {
		qemuWrite(reg, 0xffffffff)
		spaces.PCI.Write(sbdf, reg, 4, 0, 0xffffffff)
	}
	qemuWrite(0x3c, 0xffffffff)
	spaces.PCI.Write(sbdf, 0x3c, 4, 0, 0xffffffff)
	check("after all-ones writes")
	qemuWrite(0x10, 0xc000)
	spaces.PCI.Write(sbdf, 0x10, 4, 0, 0xc000)
	qemuWrite(0x04, 0x0001)
	spaces.PCI.Write(sbdf, 0x04, 4, 0, 0x0001)
	check("after BAR placement")
	for off := uint64(0); off < 8; off++ {
		want, _, err := c.In(uint16(0xc000+off), 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := spaces.PIO.Read(0xc000+off, 1, 0); got != want {
			t.Errorf("UART register %d via BAR0 = %#x, QEMU %#x", off, got, want)
		}
	}
}
