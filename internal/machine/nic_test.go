package machine

import (
	"encoding/binary"
	"testing"
	"time"

	"godm/internal/board"
	"godm/internal/qemuopts"
	"godm/netback"
	"godm/netback/usernet"
	"godm/pci"
)

// The rtl8139 on the whole machine: a guest driver written here (the
// register sequence of Linux's 8139too, through a xensim vCPU's MMIO and
// guest RAM) asks godm's user-mode network for a DHCP lease and gets the
// offer in its receive ring; the Xen platform device's NIC unplug then
// removes the NIC.

const (
	nicSlot = 5
	nicBase = 0xe1000000
	nicMAC  = "00:16:3e:5a:00:01"
)

func nicRig(t *testing.T) *boardRig {
	t.Helper()
	o, err := qemuopts.Parse("-netdev", "user,id=net0", "type")
	if err != nil {
		t.Fatal(err)
	}
	c, err := usernet.Parse(o)
	if err != nil {
		t.Fatal(err)
	}
	u, err := usernet.New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	spec := Spec{Netdevs: map[string]netback.Backend{"net0": u}}
	spec.Devices = append(spec.Entries(), board.Entry{Driver: board.NICDriver,
		Props: map[string]string{"id": "nic0", "netdev": "net0", "mac": nicMAC, "addr": "05.0"}})
	s := newBoardRig(t, spec)
	sbdf := uint32(nicSlot) << 3
	if err := s.v.PCIConfigWrite(sbdf, pci.RegBAR0+4, 4, nicBase); err != nil {
		t.Fatal(err)
	}
	if err := s.v.PCIConfigWrite(sbdf, pci.RegCommand, 2, 0x6); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *boardRig) nicW(t *testing.T, off uint64, size int, v uint64) {
	t.Helper()
	if err := s.v.MMIOWrite(nicBase+off, size, v); err != nil {
		t.Fatal(err)
	}
}

func (s *boardRig) nicR(t *testing.T, off uint64, size int) uint64 {
	t.Helper()
	v, err := s.v.MMIORead(nicBase+off, size)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func dhcpDiscover(mac [6]byte) []byte {
	msg := make([]byte, 240, 300)
	msg[0], msg[1], msg[2] = 1, 1, 6 // BOOTREQUEST, Ethernet
	binary.BigEndian.PutUint32(msg[4:], 0x1234abcd)
	copy(msg[28:], mac[:])
	binary.BigEndian.PutUint32(msg[236:], 0x63825363) // RFC 2131 magic cookie
	msg = append(msg, 53, 1, 1, 255)                  // DHCPDISCOVER
	f := make([]byte, 14+20+8+len(msg))
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], mac[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(msg)))
	copy(ip[16:], []byte{255, 255, 255, 255})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(ip[20:], 68)
	binary.BigEndian.PutUint16(ip[22:], 67)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(msg)))
	copy(ip[28:], msg)
	return f
}

func TestNICDHCPOverUserNet(t *testing.T) {
	s := nicRig(t)
	mac, err := board.ParseMAC(nicMAC)
	if err != nil {
		t.Fatal(err)
	}
	// 8139too's rtl8139_hw_start: reset, wait, enable, ring, RCR, IMR.
	s.nicW(t, 0x37, 1, 0x10)
	for i := 0; s.nicR(t, 0x37, 1)&0x10 != 0; i++ {
		if i > 1000 {
			t.Fatal("reset did not complete")
		}
	}
	for i := range 6 {
		if got := s.nicR(t, uint64(i), 1); got != uint64(mac[i]) {
			t.Fatalf("IDR%d = %#x", i, got)
		}
	}
	const ring, txbuf = 0x100000, 0x80000
	s.nicW(t, 0x37, 1, 0x0c)
	s.nicW(t, 0x30, 4, ring)
	s.nicW(t, 0x44, 4, 0x0000e70e) // 8 KiB ring, my phys, broadcast, multicast
	s.nicW(t, 0x40, 4, 0x03000600)
	s.nicW(t, 0x3c, 2, 0xc07f)
	f := dhcpDiscover(mac)
	if err := s.dom.WriteRAM(txbuf, f); err != nil {
		t.Fatal(err)
	}
	s.nicW(t, 0x20, 4, txbuf)
	s.nicW(t, 0x10, 4, uint64(len(f)))
	if tsd := s.nicR(t, 0x10, 4); tsd&0xa000 != 0xa000 {
		t.Fatalf("TSD0 after send = %#x", tsd)
	}
	// Wait for the offer: the driver polls ISR for RxOK.
	deadline := time.Now().Add(10 * time.Second)
	for s.nicR(t, 0x3e, 2)&1 == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no frame received within 10 s")
		}
		time.Sleep(time.Millisecond)
	}
	hdr := make([]byte, 4)
	if err := s.dom.ReadRAM(ring, hdr); err != nil {
		t.Fatal(err)
	}
	st := binary.LittleEndian.Uint32(hdr)
	n := int(st >> 16)
	if st&1 == 0 || n < 14+20+8+240+4 {
		t.Fatalf("rx header %#x", st)
	}
	b := make([]byte, n-4)
	if err := s.dom.ReadRAM(ring+4, b); err != nil {
		t.Fatal(err)
	}
	if [6]byte(b[:6]) != mac && [6]byte(b[:6]) != [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff} {
		t.Fatalf("reply to %x", b[:6])
	}
	dhcp := b[42:]
	yi := dhcp[16:20]
	if dhcp[0] != 2 || binary.BigEndian.Uint32(dhcp[4:]) != 0x1234abcd || yi[0] != 10 || yi[1] != 0 || yi[2] != 2 {
		t.Fatalf("not an offer of 10.0.2.x: op %d xid %#x yiaddr %v", dhcp[0], binary.BigEndian.Uint32(dhcp[4:]), yi)
	}
	if o := dhcp[240:]; o[0] != 53 || o[2] != 2 {
		t.Fatalf("first option % x, want message type OFFER", o[:3])
	}
	// The driver acknowledges; INTx drops.
	s.nicW(t, 0x3e, 2, 0xffff)
	if s.nicR(t, 0x3e, 2) != 0 {
		t.Fatal("ISR not cleared")
	}
}

func TestNICPlatformUnplug(t *testing.T) {
	s := nicRig(t)
	sbdf := uint32(nicSlot) << 3
	if id, _ := s.v.PCIConfigRead(sbdf, 0, 4); id != 0x813910ec {
		t.Fatalf("slot 5 = %#x", id)
	}
	// The PV drivers' unplug protocol: magic check, then the NIC bit
	// (docs/misc/hvm-emulated-unplug.pandoc).
	if magic, err := s.v.In(0x10, 2); err != nil || magic != 0x49d2 {
		t.Fatalf("magic %#x, %v", magic, err)
	}
	if err := s.v.Out(0x10, 2, 0x2); err != nil {
		t.Fatal(err)
	}
	if id, _ := s.v.PCIConfigRead(sbdf, 0, 4); id != 0xffffffff {
		t.Fatalf("slot 5 after unplug = %#x", id)
	}
	if got, _ := s.v.MMIORead(nicBase, 4); got != 0xffffffff {
		t.Errorf("BAR after unplug answers %#x", got)
	}
	if s.m.Board.Device("nic0") != nil {
		t.Fatal("board still lists the NIC")
	}
}
