package netback

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"godm/internal/qemuopts"
	"godm/netback/antispoof"
)

func TestParseTapAntiSpoof(t *testing.T) {
	parse := func(arg string) (TapConfig, error) {
		o, err := qemuopts.Parse("-netdev", "tap,id=n,ifname=t0,script=no,downscript=no,"+arg, "type")
		if err != nil {
			t.Fatal(err)
		}
		return ParseTap(o)
	}
	c, err := parse("x-godm-antispoof=on")
	if err != nil || !c.AntiSpoof || !c.AntiSpoofSet || len(c.AntiSpoofAddrs) != 0 {
		t.Fatalf("on: %+v %v", c, err)
	}
	c, err = parse("x-godm-antispoof=off")
	if err != nil || c.AntiSpoof || !c.AntiSpoofSet {
		t.Fatalf("off: %+v %v", c, err)
	}
	c, err = parse("x-godm-antispoof-ip=10.0.0.5;fd00::/64")
	if err != nil || !c.AntiSpoof || len(c.AntiSpoofAddrs) != 2 || c.AntiSpoofAddrs[1].String() != "fd00::/64" {
		t.Fatalf("ip: %+v %v", c, err)
	}
	c, err = parse("vnet_hdr=off")
	if err != nil || c.AntiSpoof || c.AntiSpoofSet {
		t.Fatalf("default: %+v %v", c, err)
	}
	for arg, want := range map[string]string{
		"x-godm-antispoof=maybe":                                 "x-godm-antispoof",
		"x-godm-antispoof-ip=10.0.0.300":                         "x-godm-antispoof-ip",
		"x-godm-antispoof=off,x-godm-antispoof-ip=10.0.0.5":      "x-godm-antispoof=off",
		"x-godm-antispoof-ip=" + strings.Repeat("10.0.0.1;", 17): "more than",
	} {
		_, err := parse(arg)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", arg, err, want)
		}
	}
}

// The tap with anti-spoofing on: the guest's own echo request is
// answered, a spoofed one is dropped and counted; Close leaves no
// classifier on a persistent tap.
func TestTapAntiSpoof(t *testing.T) {
	inNetns(t, func() {
		if err := antispoof.Supported(); err != nil {
			t.Skipf("the kernel refuses a BPF classifier: %v", err)
			return
		}
		// A persistent tap (as "ip tuntap add" makes): it outlives godm's
		// fd, so a filter left behind would show.
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Error(err)
			return
		}
		ifr, _ := unix.NewIfreq("vif2.0-emu")
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			t.Error(err)
			return
		}
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			t.Error(err)
			return
		}
		unix.Close(fd)

		o, _ := qemuopts.Parse("-netdev", "tap,id=net0,ifname=vif2.0-emu,script=no,downscript=no,x-godm-antispoof-ip=10.79.0.2", "type")
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
		f := tap.AntiSpoof()
		if f == nil {
			t.Error("no filter with x-godm-antispoof-ip")
			return
		}
		l, _ := netlink.LinkByName("vif2.0-emu")
		addr, _ := netlink.ParseAddr("10.79.0.1/24")
		netlink.AddrAdd(l, addr)
		guestMAC := net.HardwareAddr{0x00, 0x16, 0x3e, 0, 0, 7}
		var mac [6]byte
		copy(mac[:], guestMAC)
		if err := f.Bind(mac); err != nil {
			t.Error(err)
			return
		}
		for _, ip := range []net.IP{net.IPv4(10, 79, 0, 2), net.IPv4(10, 79, 0, 9)} {
			netlink.NeighAdd(&netlink.Neigh{LinkIndex: l.Attrs().Index, State: netlink.NUD_PERMANENT, IP: ip, HardwareAddr: guestMAC})
		}
		tapMAC := l.Attrs().HardwareAddr
		isReply := func(id uint16) func([]byte) bool {
			return func(b []byte) bool {
				return len(b) >= 42 && b[12] == 8 && b[13] == 0 && b[23] == 1 && b[34] == 0 && b[38] == byte(id>>8) && b[39] == byte(id)
			}
		}
		// Spoofed source first: no reply may come.
		transmit(t, tap, icmpEcho(tapMAC, guestMAC, net.IPv4(10, 79, 0, 9), net.IPv4(10, 79, 0, 1), 0x5151, nil), VnetHdr{})
		transmit(t, tap, icmpEcho(tapMAC, guestMAC, net.IPv4(10, 79, 0, 2), net.IPv4(10, 79, 0, 1), 0x2222, nil), VnetHdr{})
		got := waitFrame(t, tap, func(b []byte) bool { return isReply(0x2222)(b) || isReply(0x5151)(b) })
		if got == nil || !isReply(0x2222)(got) {
			t.Errorf("first reply % x, want the guest's own echo's", got)
		}
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) {
			cn, err := f.Counters()
			if err != nil {
				t.Error(err)
				return
			}
			if cn[antispoof.BadIPv4] == 1 && cn[antispoof.Passed] >= 1 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if cn, _ := f.Counters(); cn[antispoof.BadIPv4] != 1 || cn[antispoof.Passed] < 1 {
			t.Errorf("counters %v", cn)
		}
		if n := tcxPrograms(t, l.Attrs().Index); n != 1 {
			t.Errorf("%d TCX programs while open, want 1", n)
		}
		if err := tap.Close(); err != nil {
			t.Error(err)
		}
		if _, err := netlink.LinkByName("vif2.0-emu"); err != nil {
			t.Errorf("the persistent tap is gone: %v", err)
		}
		if n := tcxPrograms(t, l.Attrs().Index); n != 0 {
			t.Errorf("%d TCX programs left after Close", n)
		}
		if fs, _ := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS); len(fs) != 0 {
			t.Errorf("%d tc filters left after Close", len(fs))
		}
	})
}

func tcxPrograms(t *testing.T, index int) int {
	r, err := link.QueryPrograms(link.QueryOptions{Target: index, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		t.Errorf("query TCX: %v", err)
		return -1
	}
	return len(r.Programs)
}
