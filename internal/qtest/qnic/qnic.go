// Package qnic gives the NIC differential tests their two rigs: one of
// QEMU 7.2's NIC models under qtest ("pc" machine) on a UDP socket netdev
// whose other end the test holds, and godm's PCI function on a bus of its
// own with its INTx recorded. The scripts and what each side observes
// after a frame stay with each NIC's package.
package qnic

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"godm/devices"
	"godm/internal/qtest"
	"godm/internal/testfake"
	"godm/pci"
)

// Config is the QEMU NIC to start.
type Config struct {
	// Device is the -device value before godm's own properties, e.g.
	// "e1000" or "virtio-net-pci,ctrl_vlan=off"; netdev, mac, addr and an
	// empty romfile (godm's NICs have no option ROM) are appended.
	Device string
	MAC    [6]byte
	// Slot is the NIC's device number on bus 0.
	Slot uint8
	// IRQ, if not zero, is the ISA IRQ PIIX3's PIRQA..D are routed to
	// (the firmware's job; qtest runs none) and whose edges Edges
	// returns.
	IRQ int
}

// NIC is QEMU's side.
type NIC struct {
	t      testing.TB
	c      *qtest.Client
	peer   *net.UDPConn // the test's end of QEMU's socket netdev
	qaddr  *net.UDPAddr // QEMU's end
	slot   uint8
	irq    int
	events []bool
}

// Start starts QEMU with the NIC, or skips the test when QEMU is not
// installed. QEMU runs (qtest.Options.Running): its network layer needs
// the main loop.
func Start(t testing.TB, cfg Config) *NIC {
	t.Helper()
	if _, err := qtest.Find(qtest.Options{}); errors.Is(err, exec.ErrNotFound) {
		t.Skipf("qemu-system-x86_64 not installed (scripts/test.sh installs qemu-system-x86): %v", err)
	}
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	qport := freeUDPPort(t)
	c, err := qtest.Start(qtest.Options{Running: true, Args: []string{
		"-m", "16",
		"-netdev", fmt.Sprintf("socket,id=n0,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", peer.LocalAddr().(*net.UDPAddr).Port, qport),
		"-device", fmt.Sprintf("%s,netdev=n0,mac=%s,addr=%02x.0,romfile=", cfg.Device, net.HardwareAddr(cfg.MAC[:]), cfg.Slot),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	q := &NIC{t: t, c: c, peer: peer, qaddr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: qport}, slot: cfg.Slot, irq: cfg.IRQ}
	if cfg.IRQ != 0 {
		if err := c.InterceptIRQ("ioapic"); err != nil {
			t.Fatal(err)
		}
		// PIIX3 (00:01.0) PIRQRC[A..D] at 0x60..0x63.
		for i := range 4 {
			q.Cmd(fmt.Sprintf("outl 0xcf8 %#x", 0x80000000|1<<11|0x60))
			q.Cmd(fmt.Sprintf("outb %#x %#x", 0xcfc+i, cfg.IRQ))
		}
	}
	return q
}

func freeUDPPort(t testing.TB) int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// Cmd sends one qtest command and returns the reply's words; edges of
// the NIC's IRQ that came with it are kept for Edges.
func (q *NIC) Cmd(line string) []string {
	q.t.Helper()
	rep, err := q.c.Command(line)
	if err != nil {
		q.t.Fatal(err)
	}
	for _, e := range rep.IRQs {
		if q.irq != 0 && e.Line == q.irq {
			q.events = append(q.events, e.High)
		}
	}
	return rep.Words
}

func (q *NIC) value(w []string) uint64 {
	q.t.Helper()
	if len(w) == 0 {
		q.t.Fatal("qtest: a reply without a value")
	}
	var v uint64
	if _, err := fmt.Sscanf(w[0], "0x%x", &v); err != nil {
		q.t.Fatalf("qtest: reply %q: %v", w, err)
	}
	return v
}

func suffix(size uint8) string { return map[uint8]string{1: "b", 2: "w", 4: "l", 8: "q"}[size] }

// CF8 is the configuration address of the NIC's register off.
func (q *NIC) CF8(off uint8) uint64 { return CF8(q.slot, off) }

// CF8 is the configuration address of register off of bus 0's device
// slot, function 0.
func CF8(slot, off uint8) uint64 { return 0x80000000 | uint64(slot)<<11 | uint64(off&^3) }

// In reads size bytes at port.
func (q *NIC) In(port uint64, size uint8) uint64 {
	return q.value(q.Cmd(fmt.Sprintf("in%s %#x", suffix(size), port)))
}

// Out writes size bytes at port.
func (q *NIC) Out(port uint64, size uint8, v uint64) {
	q.Cmd(fmt.Sprintf("out%s %#x %#x", suffix(size), port, v))
}

// Read reads size bytes of MMIO (or RAM) at addr.
func (q *NIC) Read(addr uint64, size uint8) uint64 {
	return q.value(q.Cmd(fmt.Sprintf("read%s %#x", suffix(size), addr)))
}

// Write writes size bytes of MMIO (or RAM) at addr.
func (q *NIC) Write(addr uint64, size uint8, v uint64) {
	q.Cmd(fmt.Sprintf("write%s %#x %#x", suffix(size), addr, v))
}

// CfgRead reads the NIC's configuration dword at off (through 0xcf8/0xcfc).
func (q *NIC) CfgRead(off uint8) uint32 {
	q.Cmd(fmt.Sprintf("outl 0xcf8 %#x", q.CF8(off)))
	return uint32(q.In(0xcfc, 4))
}

// CfgWrite writes size bytes of the NIC's configuration space at off.
func (q *NIC) CfgWrite(off, size uint8, v uint32) {
	q.Cmd(fmt.Sprintf("outl 0xcf8 %#x", q.CF8(off)))
	q.Out(0xcfc+uint64(off&3), size, uint64(v))
}

// MemWrite writes b to guest RAM at addr.
func (q *NIC) MemWrite(addr uint64, b []byte) {
	q.Cmd(fmt.Sprintf("write %#x %d 0x%s", addr, len(b), hex.EncodeToString(b)))
}

// MemRead reads n bytes of guest RAM at addr.
func (q *NIC) MemRead(addr uint64, n int) []byte {
	q.t.Helper()
	w := q.Cmd(fmt.Sprintf("read %#x %d", addr, n))
	b, err := hex.DecodeString(strings.TrimPrefix(w[0], "0x"))
	if err != nil {
		q.t.Fatal(err)
	}
	return b
}

// Edges returns the changes of the NIC's IRQ since the last call
// (including those QEMU's main loop raised since the last command).
func (q *NIC) Edges() []bool {
	q.Cmd("inb 0x80")
	e := q.events
	q.events = nil
	return e
}

// Send gives QEMU's netdev a frame from the network. The NIC takes it in
// QEMU's main loop, later: the caller waits for what it observes.
func (q *NIC) Send(frame []byte) {
	q.t.Helper()
	if _, err := q.peer.WriteToUDP(frame, q.qaddr); err != nil {
		q.t.Fatal(err)
	}
}

// Sent returns the next frame the NIC transmitted, nil if none comes
// within two seconds.
func (q *NIC) Sent() []byte {
	buf := make([]byte, 65536)
	q.peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := q.peer.ReadFromUDP(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// SystemReset resets the machine through PIIX3's reset control register:
// SYS_RST|RST_CPU requests the same qemu_system_reset as QMP's
// system_reset (hw/isa/piix.c rcr_write); QEMU carries it out before it
// reads the next command. The BARs and the command register are the
// caller's to program again.
func (q *NIC) SystemReset() {
	q.Cmd("outb 0xcf9 0x6")
	q.Cmd("inb 0x80")
}

// PlugGodm puts godm's function fn at slot on a PCI bus of its own whose
// every INTx pin is irq, and returns the bus's address spaces.
func PlugGodm(t testing.TB, fn *pci.Device, slot uint8, irq *testfake.Recorder) *devices.Bus {
	t.Helper()
	spaces := devices.NewBus()
	bus, err := pci.NewBus(pci.BusConfig{Spaces: spaces, INTx: testfake.AllPins{Line: irq}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add(fn, slot, 0); err != nil {
		t.Fatal(err)
	}
	return spaces
}
