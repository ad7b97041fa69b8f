package netback

import (
	"bytes"
	"encoding/binary"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"godm/internal/qemuopts"
)

func TestParseTapAsLibxlWritesIt(t *testing.T) {
	// libxl/libxl_dm.c libxl__build_device_model_args_new: the netdev
	// option of an emulated NIC.
	o, err := qemuopts.Parse("-netdev", "type=tap,id=net0,ifname=vif3.0-emu,br=xenbr0,script=no,downscript=no", "type")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseTap(o)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "net0" || c.IfName != "vif3.0-emu" || c.Bridge != "xenbr0" || c.FD != -1 || c.VnetHdr {
		t.Fatalf("%+v", c)
	}
	for arg, want := range map[string]string{
		"tap,id=n,ifname=t0,script=/etc/qemu-ifup,downscript=no":   "runs no scripts",
		"tap,id=n,ifname=t0,downscript=no":                         "runs no scripts", // QEMU's default script
		"tap,id=n,ifname=t0,script=no,downscript=/bin/sh":          "runs no scripts",
		"tap,id=n,script=no,downscript=no":                         "ifname",
		"tap,id=n,ifname=0123456789abcdef,script=no,downscript=no": "ifname",
		"tap,id=n,fd=x,script=no,downscript=no":                    "file descriptor",
		"tap,id=n,fd=3,ifname=a,script=no,downscript=no":           "invalid with fd",
		"tap,id=n,ifname=t0,script=no,downscript=no,queues=4":      "unknown parameter 'queues'",
		"user,id=n": "not tap",
	} {
		o, err := qemuopts.Parse("-netdev", arg, "type")
		if err != nil {
			t.Fatal(err)
		}
		_, err = ParseTap(o)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line with %q", arg, err, want)
		}
	}
	o, _ = qemuopts.Parse("-netdev", "tap,id=n,fd=7,script=no,downscript=no", "type")
	if c, err := ParseTap(o); err != nil || c.FD != 7 {
		t.Fatalf("fd=7: %+v %v", c, err)
	}
}

// inNetns runs fn on a goroutine locked to a thread moved into a new
// network namespace; the thread is discarded after (never unlocked).
// It skips the test, saying why, when the namespace cannot be made.
func inNetns(t testing.TB, fn func()) {
	t.Helper()
	skip := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			skip <- "cannot make a network namespace (unshare CLONE_NEWNET): " + err.Error()
			return
		}
		if _, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
			skip <- "no /dev/net/tun: " + err.Error()
			return
		}
		fn()
	}()
	<-done
	select {
	case why := <-skip:
		t.Skip(why)
	default:
	}
}

func ipChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// icmpEcho builds an Ethernet/IPv4/ICMP echo request.
func icmpEcho(dstMAC, srcMAC net.HardwareAddr, src, dst net.IP, id uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f, dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = 1
	copy(ip[12:], src.To4())
	copy(ip[16:], dst.To4())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	ic := f[34:]
	ic[0] = 8
	binary.BigEndian.PutUint16(ic[4:], id)
	binary.BigEndian.PutUint16(ic[6:], 1)
	copy(ic[8:], payload)
	binary.BigEndian.PutUint16(ic[2:], ipChecksum(ic))
	return f
}

func transmit(t *testing.T, b Backend, frame []byte, hdr VnetHdr) {
	t.Helper()
	f := b.TxFrame()
	if f == nil {
		t.Fatal("no tx frame")
	}
	n := copy(f.Buf(), frame)
	f.SetLen(n)
	f.Hdr = hdr
	b.Transmit(f)
}

// waitFrame takes frames toward the guest until match accepts one.
func waitFrame(t *testing.T, b Backend, match func([]byte) bool) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f := b.RxPop()
		if f == nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		got := append([]byte(nil), f.Bytes()...)
		f.Release()
		if match(got) {
			return got
		}
	}
	t.Fatal("no matching frame toward the guest within 10s")
	return nil
}

// A guest behind a tap on a bridge, as libxl configures it: in a network
// namespace the test makes, the bridge carries the host's address; the
// guest's ICMP echo crosses tap and bridge, the kernel answers, and the
// answer comes back through the tap with the guest's payload.
func TestTapBridgeEchoInNetns(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		inNetns(t, func() {
			lo, _ := netlink.LinkByName("lo")
			netlink.LinkSetUp(lo)
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "xenbr0"}}
			if err := netlink.LinkAdd(br); err != nil {
				t.Errorf("add bridge: %v", err)
				return
			}
			addr, _ := netlink.ParseAddr("10.77.0.1/24")
			if err := netlink.AddrAdd(br, addr); err != nil {
				t.Errorf("address: %v", err)
				return
			}
			netlink.LinkSetUp(br)
			arg := "type=tap,id=net0,ifname=vif1.0-emu,br=xenbr0,script=no,downscript=no"
			if vnet {
				arg += ",vnet_hdr=on"
			}
			o, _ := qemuopts.Parse("-netdev", arg, "type")
			c, err := ParseTap(o)
			if err != nil {
				t.Error(err)
				return
			}
			tap, err := OpenTap(c)
			if err != nil {
				t.Error(err)
				return
			}
			defer tap.Close()
			l, err := netlink.LinkByName("vif1.0-emu")
			if err != nil || l.Attrs().MasterIndex != br.Attrs().Index || l.Attrs().Flags&net.FlagUp == 0 {
				t.Errorf("tap %v: master %d (bridge %d), flags %v", err, l.Attrs().MasterIndex, br.Attrs().Index, l.Attrs().Flags)
				return
			}
			if tap.Offloads() != vnet {
				t.Errorf("offloads %v, want %v", tap.Offloads(), vnet)
			}
			guestMAC := net.HardwareAddr{0x00, 0x16, 0x3e, 0, 0, 1}
			guestIP := net.IPv4(10, 77, 0, 2)
			// A static neighbour so the kernel needs no ARP answer.
			brl, _ := netlink.LinkByName("xenbr0")
			if err := netlink.NeighAdd(&netlink.Neigh{LinkIndex: brl.Attrs().Index, State: netlink.NUD_PERMANENT, IP: guestIP, HardwareAddr: guestMAC}); err != nil {
				t.Errorf("neigh: %v", err)
				return
			}
			brMAC := brl.Attrs().HardwareAddr
			payload := []byte("godm tap echo payload")
			transmit(t, tap, icmpEcho(brMAC, guestMAC, guestIP, net.IPv4(10, 77, 0, 1), 0x1234, payload), VnetHdr{})
			got := waitFrame(t, tap, func(b []byte) bool {
				return len(b) >= 42 && b[12] == 8 && b[13] == 0 && b[23] == 1 && b[34] == 0 && binary.BigEndian.Uint16(b[38:]) == 0x1234
			})
			if !bytes.Equal(got[0:6], guestMAC) || !bytes.Contains(got[42:], payload) {
				t.Errorf("echo reply % x", got)
			}
			if tap.Stats().TxFrames.Load() != 1 || tap.Stats().RxFrames.Load() == 0 {
				t.Errorf("stats tx %d rx %d", tap.Stats().TxFrames.Load(), tap.Stats().RxFrames.Load())
			}
		})
		if t.Failed() || t.Skipped() {
			return
		}
	}
}

// A peer floods the tap while the guest takes nothing: the back-end
// stops reading at its queue's depth and holds no more than its pool.
func TestTapPeerFloodBounded(t *testing.T) {
	inNetns(t, func() {
		o, _ := qemuopts.Parse("-netdev", "tap,id=n,ifname=tapflood,script=no,downscript=no", "type")
		c, _ := ParseTap(o)
		c.Depth = 8
		tap, err := OpenTap(c)
		if err != nil {
			t.Error(err)
			return
		}
		defer tap.Close()
		l, _ := netlink.LinkByName("tapflood")
		addr, _ := netlink.ParseAddr("10.78.0.1/24")
		netlink.AddrAdd(l, addr)
		guestMAC := net.HardwareAddr{0x00, 0x16, 0x3e, 0, 0, 2}
		netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: net.IPv4(10, 78, 0, 2), HardwareAddr: guestMAC})
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(s)
		sa := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{10, 78, 0, 2}}
		sent := 0
		for i := 0; i < 5000; i++ {
			if unix.Sendto(s, make([]byte, 512), 0, sa) == nil {
				sent++
			}
		}
		time.Sleep(200 * time.Millisecond)
		if sent < 100 {
			t.Errorf("only %d datagrams sent", sent)
			return
		}
		if n := tap.RxQueue().Len(); n != 8 {
			t.Errorf("receive queue holds %d, want its depth 8", n)
		}
		if free := tap.Pool().Free(); free < tap.Pool().Size()-8 {
			t.Errorf("pool free %d of %d", free, tap.Pool().Size())
		}
		if tap.Stats().RxDropped.Load() != 0 {
			t.Errorf("the tap back-end dropped %d: it should stop reading instead", tap.Stats().RxDropped.Load())
		}
		// The guest resumes: frames flow again.
		got := 0
		for f := tap.RxPop(); f != nil && got < 100; f = tap.RxPop() {
			f.Release()
			got++
			if got%8 == 0 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if got <= 8 {
			t.Errorf("after draining, only %d frames came", got)
		}
	})
}

// fd=: a tap the toolstack opened is adopted as it is (its vnet header
// setting read back from the kernel); an fd that is no tap is refused.
func TestTapPreopenedFD(t *testing.T) {
	inNetns(t, func() {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Error(err)
			return
		}
		ifr, _ := unix.NewIfreq("pre0")
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			t.Error(err)
			return
		}
		tap, err := OpenTap(TapConfig{ID: "n", FD: fd})
		if err != nil {
			t.Error(err)
			return
		}
		if tap.Name() != "pre0" || !tap.Offloads() || tap.MaxLen() != MaxGSOFrame {
			t.Errorf("adopted %s offloads %v maxlen %d", tap.Name(), tap.Offloads(), tap.MaxLen())
		}
		tap.Close()
		null, _ := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
		defer unix.Close(null)
		_, err = OpenTap(TapConfig{ID: "n", FD: null})
		if err == nil || !strings.Contains(err.Error(), "not a tap") || strings.Contains(err.Error(), "\n") {
			t.Errorf("/dev/null as a tap: %v", err)
		}
	})
}

// udpFrame builds Ethernet/IPv4/UDP; with partial, the UDP checksum field
// holds only the pseudo-header sum, for the receiver to complete (what a
// guest with checksum offload sends: virtio 1.2 5.1.6.2).
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst net.IP, sport, dport uint16, payload []byte, partial bool) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f, dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8], ip[9] = 64, 17
	copy(ip[12:], src.To4())
	copy(ip[16:], dst.To4())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	u := f[34:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	// Pseudo-header (RFC 768): addresses, protocol, UDP length.
	ph := make([]byte, 12)
	copy(ph, src.To4())
	copy(ph[4:], dst.To4())
	ph[9] = 17
	binary.BigEndian.PutUint16(ph[10:], uint16(8+len(payload)))
	if partial {
		binary.BigEndian.PutUint16(u[6:], ^ipChecksum(ph))
	} else {
		binary.BigEndian.PutUint16(u[6:], ipChecksum(append(ph, u...)))
	}
	return f
}

// Offloads through a vnet-header tap: a guest's UDP datagram whose
// checksum is left for the back-end (NEEDS_CSUM, start 34, offset 6)
// reaches a socket in the namespace, which proves the kernel completed it
// (the same frame with that partial checksum and no header is dropped by
// the kernel as corrupt). Toward the guest, headers the kernel writes
// decode to offsets inside the frame.
func TestTapVnetChecksumOffload(t *testing.T) {
	inNetns(t, func() {
		o, _ := qemuopts.Parse("-netdev", "tap,id=n,ifname=tapcsum,script=no,downscript=no,vnet_hdr=on", "type")
		c, _ := ParseTap(o)
		tap, err := OpenTap(c)
		if err != nil {
			t.Error(err)
			return
		}
		defer tap.Close()
		l, _ := netlink.LinkByName("tapcsum")
		addr, _ := netlink.ParseAddr("10.79.0.1/24")
		netlink.AddrAdd(l, addr)
		guestMAC := net.HardwareAddr{0x00, 0x16, 0x3e, 0, 0, 3}
		guestIP := net.IPv4(10, 79, 0, 2)
		netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: guestIP, HardwareAddr: guestMAC})
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer unix.Close(s)
		unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
		if err := unix.Bind(s, &unix.SockaddrInet4{Port: 5555, Addr: [4]byte{10, 79, 0, 1}}); err != nil {
			t.Error(err)
			return
		}
		hostMAC := l.Attrs().HardwareAddr
		recv := func() string {
			buf := make([]byte, 100)
			n, _, err := unix.Recvfrom(s, buf, 0)
			if err != nil {
				return ""
			}
			return string(buf[:n])
		}
		// Without a header the partial checksum is wrong: dropped.
		transmit(t, tap, udpFrame(hostMAC, guestMAC, guestIP, net.IPv4(10, 79, 0, 1), 4444, 5555, []byte("partial-no-hdr"), true), VnetHdr{})
		if got := recv(); got != "" {
			t.Errorf("a frame with a partial checksum and no offload header was received: %q", got)
		}
		transmit(t, tap, udpFrame(hostMAC, guestMAC, guestIP, net.IPv4(10, 79, 0, 1), 4444, 5555, []byte("partial-offloaded"), true),
			VnetHdr{Flags: VnetFlagNeedsCsum, CsumStart: 34, CsumOffset: 6})
		if got := recv(); got != "partial-offloaded" {
			t.Errorf("offloaded checksum: socket got %q", got)
		}
		// Toward the guest.
		if err := unix.Sendto(s, []byte("to-guest"), 0, &unix.SockaddrInet4{Port: 6666, Addr: [4]byte{10, 79, 0, 2}}); err != nil {
			t.Error(err)
			return
		}
		var hdr VnetHdr
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			f := tap.RxPop()
			if f == nil {
				time.Sleep(time.Millisecond)
				continue
			}
			b := f.Bytes()
			match := len(b) > 42 && b[23] == 17 && binary.BigEndian.Uint16(b[36:]) == 6666
			hdr = f.Hdr
			n := len(b)
			f.Release()
			if !match {
				continue
			}
			if !hdr.Valid(n) {
				t.Errorf("kernel's header %+v invalid for a %d-byte frame", hdr, n)
			}
			if hdr.Flags&VnetFlagNeedsCsum != 0 && (hdr.CsumStart != 34 || hdr.CsumOffset != 6) {
				t.Errorf("partial checksum at %d+%d, want 34+6", hdr.CsumStart, hdr.CsumOffset)
			}
			t.Logf("toward the guest: header %+v", hdr)
			return
		}
		t.Error("no second frame toward the guest")
	})
}

// The interface deleted under the back-end (an administrator, a script):
// frames from the guest are dropped and counted, and Close still ends
// every goroutine.
func TestTapInterfaceDeleted(t *testing.T) {
	inNetns(t, func() {
		o, _ := qemuopts.Parse("-netdev", "tap,id=n,ifname=tapgone,script=no,downscript=no", "type")
		c, _ := ParseTap(o)
		tap, err := OpenTap(c)
		if err != nil {
			t.Error(err)
			return
		}
		l, _ := netlink.LinkByName("tapgone")
		if err := netlink.LinkDel(l); err != nil {
			t.Error(err)
			tap.Close()
			return
		}
		frame := icmpEcho(net.HardwareAddr{2, 0, 0, 0, 0, 1}, net.HardwareAddr{2, 0, 0, 0, 0, 2}, net.IPv4(10, 0, 0, 2), net.IPv4(10, 0, 0, 1), 1, nil)
		transmit(t, tap, frame, VnetHdr{})
		deadline := time.Now().Add(10 * time.Second)
		for tap.Stats().TxDropped.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if tap.Stats().TxDropped.Load() != 1 {
			t.Errorf("write to a deleted tap: %d dropped", tap.Stats().TxDropped.Load())
		}
		done := make(chan struct{})
		go func() { tap.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Close hung after the interface was deleted")
		}
	})
}
