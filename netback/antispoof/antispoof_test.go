package antispoof

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestParseAddrs(t *testing.T) {
	ps, err := ParseAddrs("10.0.0.5, 10.1.0.0/16;fd00::7 fe80::1/64")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.5/32", "10.1.0.0/16", "fd00::7/128", "fe80::/64"}
	if len(ps) != len(want) {
		t.Fatalf("%v", ps)
	}
	for i, p := range ps {
		if p.String() != want[i] {
			t.Errorf("%d: %v, want %s", i, p, want[i])
		}
	}
	for _, bad := range []string{"10.0.0.256", "host", "10.0.0.0/33", "::ffff:10.0.0.1", "fe80::1%eth0"} {
		if _, err := ParseAddrs(bad); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one error line", bad, err)
		}
	}
	many := strings.Repeat("10.0.0.1 ", MaxPrefixes+1)
	if _, err := ParseAddrs(many); err == nil {
		t.Errorf("%d networks accepted", MaxPrefixes+1)
	}
}

// inNetns runs fn on a thread moved into a network namespace of its own
// (discarded after). It skips, saying why, when the kernel refuses the
// namespace, the tun device or BPF (checked by loading a trivial
// classifier there).
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
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			skip <- "no /dev/net/tun: " + err.Error()
			return
		}
		unix.Close(fd)
		if err := probeBPF(); err != nil {
			skip <- "the kernel refuses a BPF classifier: " + err.Error()
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

func probeBPF() error {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		return err
	}
	return p.Close()
}

var (
	guestMAC = net.HardwareAddr{0x00, 0x16, 0x3e, 0, 0, 5}
	otherMAC = net.HardwareAddr{0x00, 0x16, 0x3e, 0, 0, 6}
	guestIP  = net.IPv4(10, 80, 0, 5).To4()
	hostIP   = net.IPv4(10, 80, 0, 1).To4()
	spoofIP  = net.IPv4(10, 80, 0, 99).To4()
	bcast    = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func csum(b []byte) uint16 {
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

func ether(dst, src net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := make([]byte, 14, 14+len(payload))
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], typ)
	return append(f, payload...)
}

// udp4 is an Ethernet/IPv4/UDP frame (UDP checksum 0: none).
func udp4(dst, src net.HardwareAddr, sip, dip net.IP, sport, dport uint16, data string) []byte {
	ip := make([]byte, 28+len(data))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:], sip.To4())
	copy(ip[16:], dip.To4())
	binary.BigEndian.PutUint16(ip[10:], csum(ip[:20]))
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], dport)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(data)))
	copy(ip[28:], data)
	return ether(dst, src, 0x0800, ip)
}

// arpRequest asks for tip with sender sha/sip (RFC 826).
func arpRequest(src, sha net.HardwareAddr, sip, tip net.IP) []byte {
	a := make([]byte, 28)
	copy(a, []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(a[8:], sha)
	copy(a[14:], sip.To4())
	copy(a[24:], tip.To4())
	return ether(bcast, src, 0x0806, a)
}

// ipv6 is an Ethernet/IPv6 frame with an empty no-next-header payload.
func ipv6(src net.HardwareAddr, sip string) []byte {
	h := make([]byte, 40)
	h[0] = 0x60
	h[6] = 59 // no next header
	h[7] = 255
	a := netip.MustParseAddr(sip).As16()
	copy(h[8:], a[:])
	d := netip.MustParseAddr("ff02::1").As16()
	copy(h[24:], d[:])
	return ether(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, src, 0x86dd, h)
}

type tapFixture struct {
	t     testing.TB
	fd    int
	mac   net.HardwareAddr
	sock  int // UDP 10.80.0.1:7000
	dhcp  int // UDP 0.0.0.0:67
	index int
}

func openTap(t testing.TB, name string) *tapFixture {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	ifr, _ := unix.NewIfreq(name)
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.80.0.1/24")
	if err := netlink.AddrAdd(l, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	lo, _ := netlink.LinkByName("lo")
	netlink.LinkSetUp(lo)
	l, _ = netlink.LinkByName(name)
	x := &tapFixture{t: t, fd: fd, mac: l.Attrs().HardwareAddr, index: l.Attrs().Index}
	x.sock = udpSock(t, [4]byte{10, 80, 0, 1}, 7000)
	x.dhcp = udpSock(t, [4]byte{}, 67)
	return x
}

func udpSock(t testing.TB, a [4]byte, port int) int {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(s, &unix.SockaddrInet4{Port: port, Addr: a}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (x *tapFixture) close() {
	unix.Close(x.sock)
	unix.Close(x.dhcp)
	unix.Close(x.fd)
}

func (x *tapFixture) send(f []byte) {
	if _, err := unix.Write(x.fd, f); err != nil {
		x.t.Fatalf("write to tap: %v", err)
	}
}

// recv waits up to d for a datagram on s and returns its text ("" for
// none).
func recv(s int, d time.Duration) string {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	unix.SetsockoptTimeval(s, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	b := make([]byte, 2048)
	n, err := unix.Read(s, b)
	if err != nil {
		return ""
	}
	return string(b[:n])
}

// arpReply waits up to d for the host's ARP reply to the guest.
func (x *tapFixture) arpReply(d time.Duration) bool {
	deadline := time.Now().Add(d)
	b := make([]byte, 2048)
	for time.Now().Before(deadline) {
		p := []unix.PollFd{{Fd: int32(x.fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(p, 50); n <= 0 {
			continue
		}
		n, err := unix.Read(x.fd, b)
		if err != nil || n < 42 {
			continue
		}
		if binary.BigEndian.Uint16(b[12:]) == 0x0806 && binary.BigEndian.Uint16(b[20:]) == 2 && net.IP(b[38:42]).Equal(guestIP) {
			return true
		}
	}
	return false
}

const (
	passWait = 3 * time.Second
	dropWait = 300 * time.Millisecond
)

func testFilter(t *testing.T, clsact bool) {
	inNetns(t, func() {
		forceClsact = clsact
		defer func() { forceClsact = false }()
		x := openTap(t, "astap0")
		defer x.close()

		// Without the filter a spoofed source reaches the host: the
		// drops below are the filter's doing.
		x.send(udp4(x.mac, otherMAC, spoofIP, hostIP, 7001, 7000, "spoof-nofilter"))
		if got := recv(x.sock, passWait); got != "spoof-nofilter" {
			t.Fatalf("without a filter a spoofed frame got %q, want it delivered", got)
		}

		f, err := Attach("astap0", Policy{Prefixes: []netip.Prefix{netip.MustParsePrefix("10.80.0.5/32"), netip.MustParsePrefix("fd00::5/128")}})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if want := map[bool]string{false: "tcx", true: "clsact"}[clsact]; f.Mode() != want {
			t.Fatalf("mode %s, want %s", f.Mode(), want)
		}
		var want Counters
		check := func(what string) {
			t.Helper()
			got, err := f.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("%s: counters %v, want %v", what, got, want)
			}
		}
		// Unbound: everything dropped.
		x.send(udp4(x.mac, guestMAC, guestIP, hostIP, 7001, 7000, "unbound"))
		want[Unbound]++
		if got := recv(x.sock, dropWait); got != "" {
			t.Fatalf("before Bind %q was delivered", got)
		}
		check("unbound")
		var mac [6]byte
		copy(mac[:], guestMAC)
		if err := f.Bind(mac); err != nil {
			t.Fatal(err)
		}

		x.send(udp4(x.mac, guestMAC, guestIP, hostIP, 7001, 7000, "good"))
		want[Passed]++
		if got := recv(x.sock, passWait); got != "good" {
			t.Fatalf("guest's own frame: got %q", got)
		}
		x.send(udp4(x.mac, otherMAC, guestIP, hostIP, 7001, 7000, "badmac"))
		want[BadMAC]++
		x.send(udp4(x.mac, guestMAC, spoofIP, hostIP, 7001, 7000, "badip"))
		want[BadIPv4]++
		if got := recv(x.sock, dropWait); got != "" {
			t.Fatalf("spoofed frame %q delivered", got)
		}
		check("spoofed MAC and IPv4")

		// DHCP discover from 0.0.0.0 (RFC 2131 4.1).
		x.send(udp4(bcast, guestMAC, net.IPv4zero, net.IPv4bcast, 68, 67, "discover"))
		want[Passed]++
		if got := recv(x.dhcp, passWait); got != "discover" {
			t.Fatalf("DHCP discover: got %q", got)
		}
		// ...but not from a foreign MAC, nor other UDP from 0.0.0.0.
		x.send(udp4(bcast, otherMAC, net.IPv4zero, net.IPv4bcast, 68, 67, "discover2"))
		want[BadMAC]++
		x.send(udp4(bcast, guestMAC, net.IPv4zero, net.IPv4bcast, 69, 67, "notdhcp"))
		want[BadIPv4]++
		if got := recv(x.dhcp, dropWait); got != "" {
			t.Fatalf("%q delivered", got)
		}
		check("DHCP")

		x.send(arpRequest(guestMAC, guestMAC, guestIP, hostIP))
		want[Passed]++
		if !x.arpReply(passWait) {
			t.Fatal("no ARP reply to the guest's own request")
		}
		x.send(arpRequest(guestMAC, guestMAC, spoofIP, hostIP))
		x.send(arpRequest(guestMAC, otherMAC, guestIP, hostIP))
		want[BadARP] += 2
		x.send(arpRequest(guestMAC, guestMAC, net.IPv4zero, hostIP)) // RFC 5227 probe
		want[Passed]++
		check("ARP")
		// The spoofed requests got no reply (the probe gets none either:
		// RFC 5227 2.1.1, and Linux answers with the target's address only
		// to a sender it can answer, so only a stale reply could show).
		if x.arpReply(dropWait) {
			t.Error("an ARP reply came after the spoofed requests")
		}

		x.send(ipv6(guestMAC, "fe80::216:3eff:fe00:5"))
		x.send(ipv6(guestMAC, "fe80::1234"))
		x.send(ipv6(guestMAC, "::"))
		x.send(ipv6(guestMAC, "fd00::5"))
		want[Passed] += 4
		x.send(ipv6(guestMAC, "fd00::6"))
		x.send(ipv6(guestMAC, "fe80:0:0:1::5"))
		want[BadIPv6] += 2
		x.send(ether(bcast, guestMAC, 0x88cc, make([]byte, 46))) // LLDP
		want[BadType]++
		x.send(ether(bcast, guestMAC, 0x0806, make([]byte, 10))) // a truncated ARP
		want[Malformed]++
		check("IPv6, other types, malformed")

		if err := f.Unbind(); err != nil {
			t.Fatal(err)
		}
		x.send(udp4(x.mac, guestMAC, guestIP, hostIP, 7001, 7000, "unbound2"))
		want[Unbound]++
		check("unbind")

		if n := attached(t, x.index); n != 1 {
			t.Fatalf("%d classifiers on the tap while attached, want 1", n)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if n := attached(t, x.index); n != 0 {
			t.Fatalf("%d classifiers left on the tap after Close", n)
		}
		if clsact {
			qs, _ := netlink.QdiscList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: x.index}})
			for _, q := range qs {
				if q.Type() == "clsact" {
					t.Fatal("the clsact qdisc the filter added is left")
				}
			}
		}
		if _, err := f.Counters(); err == nil {
			t.Fatal("counters of a closed filter")
		}
		x.send(udp4(x.mac, otherMAC, spoofIP, hostIP, 7001, 7000, "after-close"))
		if got := recv(x.sock, passWait); got != "after-close" {
			t.Fatalf("after Close a frame got %q, want it delivered (no filter left)", got)
		}
	})
}

// attached counts the classifiers on the interface's ingress: TCX
// programs and cls_bpf filters.
func attached(t testing.TB, index int) int {
	n := 0
	r, err := link.QueryPrograms(link.QueryOptions{Target: index, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		n += len(r.Programs)
	} else if !errors.Is(err, ebpf.ErrNotSupported) {
		t.Fatalf("query tcx: %v", err)
	}
	fs, err := netlink.FilterList(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: index}}, netlink.HANDLE_MIN_INGRESS)
	if err == nil {
		n += len(fs)
	}
	return n
}

func TestFilterTCX(t *testing.T)    { testFilter(t, false) }
func TestFilterClsact(t *testing.T) { testFilter(t, true) }

func TestUnrestrictedChecksMACsOnly(t *testing.T) {
	inNetns(t, func() {
		x := openTap(t, "astap1")
		defer x.close()
		f, err := Attach("astap1", Policy{})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var mac [6]byte
		copy(mac[:], guestMAC)
		f.Bind(mac)
		x.send(udp4(x.mac, guestMAC, spoofIP, hostIP, 7001, 7000, "anyip"))
		if got := recv(x.sock, passWait); got != "anyip" {
			t.Fatalf("without listed addresses any source passes (Xen's rule); got %q", got)
		}
		x.send(udp4(x.mac, otherMAC, guestIP, hostIP, 7001, 7000, "badmac"))
		x.send(arpRequest(guestMAC, otherMAC, guestIP, hostIP))
		x.send(ether(bcast, guestMAC, 0x88cc, make([]byte, 46)))
		c, _ := f.Counters()
		if c != (Counters{Passed: 2, BadMAC: 1, BadARP: 1}) {
			t.Fatalf("counters %v", c)
		}
	})
}

func TestAttachErrorsAreOneLine(t *testing.T) {
	_, err := Attach("no-such-if0", Policy{})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "no-such-if0") {
		t.Fatalf("%v", err)
	}
}

// Without CAP_BPF, CAP_SYS_ADMIN and CAP_NET_ADMIN (dropped from this
// thread only: capabilities are per thread, and the thread is discarded
// after) Attach fails with one line that says what is missing.
func TestAttachWithoutCapabilities(t *testing.T) {
	inNetns(t, func() {
		x := openTap(t, "astap2")
		defer x.close()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			t.Error(err)
			return
		}
		for _, c := range []uint{unix.CAP_BPF, unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN, unix.CAP_PERFMON} {
			data[c/32].Effective &^= 1 << (c % 32)
			data[c/32].Permitted &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			t.Errorf("drop capabilities: %v", err)
			return
		}
		f, err := Attach("astap2", Policy{})
		if err == nil {
			f.Close()
			t.Error("attached without capabilities")
			return
		}
		if s := err.Error(); strings.Contains(s, "\n") || !strings.Contains(s, "astap2") || !strings.Contains(s, "needs CAP_BPF and CAP_NET_ADMIN") {
			t.Errorf("error %q, want one line naming the interface and the capabilities", s)
		}
		t.Log(err)
	})
}
