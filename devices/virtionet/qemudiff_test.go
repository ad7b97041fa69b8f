package virtionet

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"godm/devices"
	"godm/internal/qtest/qnic"
	"godm/internal/testfake"
	"godm/memory"
	"godm/netback"
)

// The differential test drives QEMU 7.2's virtio-net-pci (qtest, "pc"
// machine, the NIC at 00:04.0 on a UDP socket netdev the test holds the
// other end of: no vnet header, so QEMU offers no offload) and godm's
// device with one script and compares every observation: the PCI
// configuration space with its capabilities, every legacy register at
// widths 1/2/4, the device configuration, the modern common
// configuration's feature words and queue sizes, then a legacy bring-up
// that sends a frame (the bytes on the wire) and receives one (guest
// memory: header, frame, used ring; ISR), then control queue commands
// (receive modes, the MAC table: acks, and which frames reach the
// guest). QEMU runs with the control queue features godm does not offer
// off (ctrl_vlan, ctrl_rx_extra, ctrl_mac_addr, ctrl_guest_offloads,
// guest_announce).

type vnTarget interface {
	cfgRead(off uint8) uint32
	cfgWrite(off uint8, v uint32)
	ioRead(off uint64, size uint8) uint64
	ioWrite(off uint64, size uint8, v uint64)
	modRead(off uint64, size uint8) uint64
	modWrite(off uint64, size uint8, v uint64)
	memWrite(addr uint64, b []byte)
	memRead(addr uint64, n int) []byte
	inject(frame []byte, usedAt uint64)
	sent() []byte
}

const (
	diffIO     = 0xc000
	diffMSIX   = 0xe0010000
	diffModern = 0xe0100000
	diffSlot   = 4
)

// --- QEMU

type qemuVN struct{ *qnic.NIC }

func startQEMU(t *testing.T) *qemuVN {
	t.Helper()
	return &qemuVN{qnic.Start(t, qnic.Config{MAC: testMAC, Slot: diffSlot,
		Device: "virtio-net-pci,ctrl_vlan=off,ctrl_rx_extra=off,ctrl_mac_addr=off,ctrl_guest_offloads=off,guest_announce=off"})}
}

func (q *qemuVN) cfgRead(off uint8) uint32                  { return q.CfgRead(off) }
func (q *qemuVN) cfgWrite(off uint8, v uint32)              { q.CfgWrite(off, 4, v) }
func (q *qemuVN) ioRead(off uint64, size uint8) uint64      { return q.In(diffIO+off, size) }
func (q *qemuVN) ioWrite(off uint64, size uint8, v uint64)  { q.Out(diffIO+off, size, v) }
func (q *qemuVN) modRead(off uint64, size uint8) uint64     { return q.Read(diffModern+off, size) }
func (q *qemuVN) modWrite(off uint64, size uint8, v uint64) { q.Write(diffModern+off, size, v) }
func (q *qemuVN) memWrite(addr uint64, b []byte)            { q.MemWrite(addr, b) }
func (q *qemuVN) memRead(addr uint64, n int) []byte         { return q.MemRead(addr, n) }
func (q *qemuVN) sent() []byte                              { return q.Sent() }
func (q *qemuVN) inject(frame []byte, usedAt uint64) {
	before := binary.LittleEndian.Uint16(q.memRead(usedAt+2, 2))
	q.Send(frame)
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		if binary.LittleEndian.Uint16(q.memRead(usedAt+2, 2)) != before {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// --- godm

type godmVN struct {
	d  *Device
	mc *memory.MapCache
	be portBE
}

func startGodm(t *testing.T) *godmVN {
	t.Helper()
	mc, err := memory.NewMapCache(memory.FromBytes(make([]byte, 16<<20)), memory.MapCacheConfig{BucketShift: 16})
	if err != nil {
		t.Fatal(err)
	}
	be := portBE{netback.NewPort(netback.PortConfig{Depth: 16})}
	d, err := New(Config{MAC: testMAC, Memory: mc, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		be.Close()
		mc.Close()
	})
	return &godmVN{d: d, mc: mc, be: be}
}

func (g *godmVN) cfgRead(off uint8) uint32 {
	return uint32(g.d.Function().Read(devices.Access{Offset: uint64(off), Size: 4}))
}
func (g *godmVN) cfgWrite(off uint8, v uint32) {
	g.d.Function().Write(devices.Access{Offset: uint64(off), Size: 4}, uint64(v))
}
func (g *godmVN) ioRead(off uint64, size uint8) uint64 {
	return g.d.t.LegacyRegs().Read(devices.Access{Offset: off, Size: size})
}
func (g *godmVN) ioWrite(off uint64, size uint8, v uint64) {
	g.d.t.LegacyRegs().Write(devices.Access{Offset: off, Size: size}, v)
}
func (g *godmVN) modRead(off uint64, size uint8) uint64 {
	return g.d.t.ModernRegs().Read(devices.Access{Offset: off, Size: size})
}
func (g *godmVN) modWrite(off uint64, size uint8, v uint64) {
	g.d.t.ModernRegs().Write(devices.Access{Offset: off, Size: size}, v)
}
func (g *godmVN) memWrite(addr uint64, b []byte) { g.mc.Write(memory.GPA(addr), b) }
func (g *godmVN) memRead(addr uint64, n int) []byte {
	b := make([]byte, n)
	g.mc.Read(memory.GPA(addr), b)
	return b
}
func (g *godmVN) inject(frame []byte, usedAt uint64) {
	seen := func() uint64 {
		st := g.d.Stats()
		return st.RxFrames.Load() + st.RxDropped.Load() + st.RxFiltered.Load()
	}
	before := seen()
	f := g.be.Pool().Get()
	f.SetLen(copy(f.Buf(), frame))
	g.be.Deliver(f)
	testfake.Until(2*time.Second, func() bool { return seen() > before })
}
func (g *godmVN) sent() []byte {
	var b []byte
	testfake.Until(2*time.Second, func() bool {
		f := g.be.TxQueue().Pop()
		if f != nil {
			b = slices.Clone(f.Bytes())
			f.Release()
		}
		return f != nil
	})
	return b
}

// --- the script

const (
	dRx   = 0x10000
	dTx   = 0x20000
	dCtrl = 0x30000
	dBuf  = 0x100000
)

func vnScript(x vnTarget) []string {
	var log []string
	note := func(format string, a ...any) { log = append(log, fmt.Sprintf(format, a...)) }
	// BARs as a BIOS would place them: BAR0 I/O, BAR1 the MSI-X table,
	// BAR4 64-bit; I/O and memory decoding, bus master.
	x.cfgWrite(0x10, diffIO)
	x.cfgWrite(0x14, diffMSIX)
	x.cfgWrite(0x20, diffModern)
	x.cfgWrite(0x24, 0)
	x.cfgWrite(0x04, 7)
	for off := 0; off < 0x100; off += 4 {
		note("config %#02x = %#08x", off, x.cfgRead(uint8(off)))
	}
	legacy := func(what string) {
		for _, size := range []uint8{1, 2, 4} {
			for off := uint64(0); off+uint64(size) <= 32; off += uint64(size) {
				if off <= 19 && off+uint64(size) > 19 {
					continue // the ISR: its read clears it
				}
				note("%s: io%d %#02x = %#x", what, size, off, x.ioRead(off, size))
			}
		}
	}
	legacy("reset")
	// The modern common configuration: both feature words, the queue
	// count and each queue's size.
	for sel := range uint64(2) {
		x.modWrite(0x00, 4, sel)
		note("modern: device features[%d] = %#x", sel, x.modRead(0x04, 4))
	}
	note("modern: num_queues = %d", x.modRead(0x12, 2))
	for q := range uint64(4) {
		x.modWrite(0x16, 2, q)
		note("modern: queue %d size %d", q, x.modRead(0x18, 2))
	}
	x.modWrite(0x16, 2, 0)
	for off := uint64(0); off < 12; off++ {
		note("modern: device config %d = %#x", off, x.modRead(0x2000+off, 1))
	}
	// Legacy bring-up with mergeable buffers (12-byte header).
	x.ioWrite(18, 1, 1)
	x.ioWrite(18, 1, 3)
	x.ioWrite(4, 4, FMAC|FStatus|FMrgRxBuf|FCtrlVQ|fCtrlRx)
	x.ioWrite(14, 2, RxQueue)
	x.ioWrite(8, 4, dRx>>12)
	x.ioWrite(14, 2, TxQueue)
	x.ioWrite(8, 4, dTx>>12)
	x.ioWrite(14, 2, CtrlQueue)
	x.ioWrite(8, 4, dCtrl>>12)
	x.ioWrite(18, 1, 7)
	legacy("driver ok")
	// MAC written by a legacy driver.
	x.ioWrite(20+5, 1, 0xee)
	note("mac write: %#x", x.ioRead(20, 4)|x.ioRead(24, 2)<<32)
	x.ioWrite(20+5, 1, uint64(testMAC[5]))
	desc := func(ring uint64, i int, addr uint64, l uint32, flags, next uint16) {
		var b [16]byte
		binary.LittleEndian.PutUint64(b[0:], addr)
		binary.LittleEndian.PutUint32(b[8:], l)
		binary.LittleEndian.PutUint16(b[12:], flags)
		binary.LittleEndian.PutUint16(b[14:], next)
		x.memWrite(ring+16*uint64(i), b[:])
	}
	avail := func(ring uint64, slot int, head uint16, idx uint16) {
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], head)
		x.memWrite(ring+0x1000+4+2*uint64(slot), b[:])
		binary.LittleEndian.PutUint16(b[:], idx)
		x.memWrite(ring+0x1000+2, b[:])
	}
	// Transmit: header apart, the frame in two pieces.
	f := frame([6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 300, 7)
	x.memWrite(dBuf, make([]byte, 12))
	x.memWrite(dBuf+0x100, f[:100])
	x.memWrite(dBuf+0x400, f[100:])
	desc(dTx, 0, dBuf, 12, 1, 1)
	desc(dTx, 1, dBuf+0x100, 100, 1, 2)
	desc(dTx, 2, dBuf+0x400, 200, 0, 0)
	avail(dTx, 0, 0, 1)
	x.ioWrite(16, 2, TxQueue)
	note("tx: wire %x", x.sent())
	note("tx: used %x", x.memRead(dTx+0x2000, 12))
	note("tx: isr %#x", x.ioRead(19, 1))
	note("tx: isr again %#x", x.ioRead(19, 1))
	// Receive into two 512-byte mergeable buffers and one of 2048.
	x.memWrite(dBuf+0x1000, make([]byte, 0x3000))
	desc(dRx, 0, dBuf+0x1000, 512, 2, 0)
	desc(dRx, 1, dBuf+0x2000, 512, 2, 0)
	desc(dRx, 2, dBuf+0x3000, 2048, 2, 0)
	avail(dRx, 0, 0, 1)
	avail(dRx, 1, 1, 2)
	avail(dRx, 2, 2, 3)
	x.ioWrite(16, 2, RxQueue)
	g := frame(testMAC, 900, 9)
	x.inject(g, dRx+0x2000)
	note("rx: buf0 %x", x.memRead(dBuf+0x1000, 512))
	note("rx: buf1 %x", x.memRead(dBuf+0x2000, 512))
	// The used ring from its index on: its flags are QEMU's
	// notification suppression (VRING_USED_F_NO_NOTIFY while it holds
	// buffers), an optimisation godm does not make.
	note("rx: used %x", x.memRead(dRx+0x2000+2, 2+8*3))
	note("rx: isr %#x", x.ioRead(19, 1))
	small := frame(testMAC, 60, 10)
	x.inject(small, dRx+0x2000)
	note("rx small: buf2 %x", x.memRead(dBuf+0x3000, 80))
	note("rx small: used %x", x.memRead(dRx+0x2000+2, 2+8*3))
	// Control queue (64 entries: avail ring at +0x400, used at +0x1000):
	// each command a header, its data and an ack byte.
	cmds := []struct {
		class, cmd byte
		data       []byte
	}{
		{ctrlRx, rxPromisc, []byte{0}},
		{ctrlRx, rxAllMulti, []byte{0}},
		{ctrlRx, rxNoBcast, []byte{0}},
		{ctrlRx, 9, []byte{1}},
		{ctrlRx, rxPromisc, nil},
		{ctrlMAC, macTableSet, []byte{1, 0, 0, 0, 2, 0, 0, 0, 0, 9, 1, 0, 0, 0, 1, 0, 0x5e, 0, 0, 7}},
		{ctrlMAC, macTableSet, []byte{2, 0, 0, 0, 2, 0, 0, 0, 0, 9}},
		{ctrlMAC, macTableSet, []byte{0xff, 0xff, 0xff, 0xff}},
		{ctrlMAC, macAddrSet, []byte{2, 0, 0, 0, 0, 9, 9}},
		{7, 0, []byte{1}},
		{ctrlMAC, macAddrSet, []byte{2, 0, 0, 0, 0, 0xa}},
	}
	for i, c := range cmds {
		at := dBuf + 0x8000 + uint64(i)*0x100
		x.memWrite(at, append([]byte{c.class, c.cmd}, c.data...))
		x.memWrite(at+0x80, []byte{0xaa})
		d := 2 * i
		ring := func(j int, addr uint64, l uint32, flags, next uint16) {
			var b [16]byte
			binary.LittleEndian.PutUint64(b[0:], addr)
			binary.LittleEndian.PutUint32(b[8:], l)
			binary.LittleEndian.PutUint16(b[12:], flags)
			binary.LittleEndian.PutUint16(b[14:], next)
			x.memWrite(dCtrl+16*uint64(j), b[:])
		}
		ring(d, at, uint32(2+len(c.data)), 1, uint16(d+1))
		ring(d+1, at+0x80, 1, 2, 0)
		var b [2]byte
		binary.LittleEndian.PutUint16(b[:], uint16(d))
		x.memWrite(dCtrl+0x400+4+2*uint64(i), b[:])
		binary.LittleEndian.PutUint16(b[:], uint16(i+1))
		x.memWrite(dCtrl+0x400+2, b[:])
		x.ioWrite(16, 2, CtrlQueue)
		note("ctrl %d %d % x: ack %x used %x", c.class, c.cmd, c.data, x.memRead(at+0x80, 1), x.memRead(dCtrl+0x1000+2, 2+8*(i+1))[2+8*i:])
	}
	// Which frames reach the guest now: promiscuous off, the table with
	// 02:00:00:00:00:09 and 01:00:5e:00:00:07, the station address
	// 02:00:00:00:00:0a.
	for i := range 5 {
		desc(dRx, 3+i, dBuf+0x4000+uint64(i)*0x800, 2048, 2, 0)
		avail(dRx, 3+i, uint16(3+i), uint16(4+i))
	}
	x.ioWrite(16, 2, RxQueue)
	for _, dst := range [][6]byte{{2, 0, 0, 0, 0, 8}, testMAC, {2, 0, 0, 0, 0, 0xa}, {2, 0, 0, 0, 0, 9}, {0, 0, 0, 0, 0, 9},
		{1, 0, 0x5e, 0, 0, 8}, {1, 0, 0x5e, 0, 0, 7}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		x.inject(frame(dst, 64, 11), dRx+0x2000)
		note("filter %x: used index %x", dst, x.memRead(dRx+0x2000+2, 2))
	}
	// Reset through the status register.
	x.ioWrite(18, 1, 0)
	legacy("after reset")
	return log
}

func TestQEMUDiffVirtioNet(t *testing.T) {
	q := startQEMU(t)
	want := vnScript(q)
	got := vnScript(startGodm(t))
	if len(want) != len(got) {
		t.Fatalf("QEMU %d observations, godm %d", len(want), len(got))
	}
	bad := 0
	for i := range want {
		if want[i] != got[i] {
			bad++
			if bad <= 40 {
				t.Errorf("\nqemu: %s\ngodm: %s", want[i], got[i])
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d observations differ", bad, len(want))
	}
	t.Logf("%d observations agree", len(want))
	if testing.Verbose() {
		for _, l := range want {
			if strings.HasPrefix(l, "ctrl") || strings.HasPrefix(l, "filter") {
				t.Log(l)
			}
		}
	}
}
