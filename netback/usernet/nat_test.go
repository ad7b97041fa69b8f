package usernet

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
)

// echoFrame is an ICMP echo request from the guest to dst via the
// gateway's MAC.
func echoFrame(u *User, dst [4]byte, id uint16) []byte {
	f := make([]byte, 14+20+8+16)
	copy(f, u.cfg.MAC[:])
	copy(f[6:], guestMAC[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := header.IPv4(f[14:])
	ip.Encode(&header.IPv4Fields{TotalLength: 20 + 8 + 16, TTL: 64, Protocol: uint8(header.ICMPv4ProtocolNumber),
		SrcAddr: tcpip.AddrFrom4(u.cfg.DHCPStart.As4()), DstAddr: tcpip.AddrFrom4(dst)})
	ip.SetChecksum(^ip.CalculateChecksum())
	ic := header.ICMPv4(f[34:])
	ic.SetType(header.ICMPv4Echo)
	ic.SetIdent(id)
	ic.SetSequence(1)
	ic.SetChecksum(header.ICMPv4Checksum(ic, 0))
	return f
}

// waitEchoReply reports whether an echo reply with id comes back within d.
func waitEchoReply(u *User, id uint16, d time.Duration) (src [4]byte, ok bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		f := u.RxPop()
		if f == nil {
			time.Sleep(time.Millisecond)
			continue
		}
		b := f.Bytes()
		if len(b) >= 42 && binary.BigEndian.Uint16(b[12:]) == 0x0800 && b[23] == 1 && b[34] == 0 && binary.BigEndian.Uint16(b[38:]) == id {
			copy(src[:], b[26:30])
			f.Release()
			return src, true
		}
		f.Release()
	}
	return src, false
}

// ICMP echo: the gateway and DNS addresses answer; an address beyond
// them is not answered by the stack in their place (a guest must not
// see every host as alive: there is no ICMP NAT yet).
func TestEchoOnlyFromGatewayAddresses(t *testing.T) {
	u := newUser(t, "user,id=e", nil)
	u.stack.AddStaticNeighbor(nicID, ipv4.ProtocolNumber, tcpip.AddrFrom4(u.cfg.DHCPStart.As4()), tcpip.LinkAddress(guestMAC[:]))
	for i, c := range []struct {
		dst    [4]byte
		answer bool
	}{
		{[4]byte{10, 0, 2, 2}, true},
		{[4]byte{10, 0, 2, 3}, true},
		{[4]byte{192, 0, 2, 1}, false}, // TEST-NET-1: nothing leaves loopback either way
		{[4]byte{10, 0, 2, 99}, false},
	} {
		id := uint16(0x100 + i)
		if !sendFrame(u, echoFrame(u, c.dst, id)) {
			t.Fatal("no room")
		}
		wait := 10 * time.Second
		if !c.answer {
			wait = 300 * time.Millisecond
		}
		src, ok := waitEchoReply(u, id, wait)
		if ok != c.answer || (ok && src != c.dst) {
			t.Errorf("echo to %v: reply %v from %v", c.dst, ok, src)
		}
	}
}

func TestHostTargets(t *testing.T) {
	u := newUser(t, "user,id=t", nil)
	for a, want := range map[string]string{
		"10.0.2.2:80":        "127.0.0.1:80", // the gateway is the host's loopback
		"10.0.2.3:53":        "",             // DNS is UDP through the resolver only
		"10.0.2.16:80":       "",             // the guest's own network
		"192.0.2.7:443":      "192.0.2.7:443",
		"127.0.0.1:22":       "", // loopback only through the gateway
		"224.0.0.251:5353":   "",
		"255.255.255.255:9":  "",
		"169.254.169.254:80": "",
		"0.0.0.0:80":         "",
		"198.51.100.1:0":     "",
	} {
		ap := netip.MustParseAddrPort(a)
		got, ok := u.hostTarget(tcpip.AddrFrom4(ap.Addr().As4()), ap.Port())
		if ok != (want != "") || got != want {
			t.Errorf("%s → %q %v, want %q", a, got, ok, want)
		}
	}
}

// A guest opening more NAT connections than MaxFlows is refused past the
// cap (a RST, not a queue), and gets room again when one closes.
func TestNATFlowCap(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // open until the guest's side ends
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	u := newUser(t, "user,id=cap", func(c *Config) { c.MaxFlows = 3 })
	g := startGuest(t, u, u.cfg.DHCPStart, u.cfg.Host, u.cfg.Net.Bits())
	target := fmt.Sprintf("10.0.2.2:%d", ln.Addr().(*net.TCPAddr).Port)
	var conns []net.Conn
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c, err := g.dial(ctx, target)
		cancel()
		if err != nil {
			t.Fatalf("connection %d under the cap: %v", i, err)
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_, err = g.dial(ctx, target)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("connection past the cap: %v, want refused", err)
	}
	conns[0].Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		c, err := g.dial(ctx, target)
		cancel()
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after a connection closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range conns[1:] {
		c.Close()
	}
}

// hostfwd=udp: a host peer's datagrams reach the guest's socket and its
// answers come back to that peer.
func TestHostFwdUDP(t *testing.T) {
	u := newUser(t, "user,id=uf,hostfwd=udp:127.0.0.1:0-:5353", nil)
	g := startGuest(t, u, u.cfg.DHCPStart, u.cfg.Host, u.cfg.Net.Bits())
	gc, err := gonet.DialUDP(g.s, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(u.cfg.DHCPStart.As4()), Port: 5353}, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer gc.Close()
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := gc.ReadFrom(buf)
			if err != nil {
				return
			}
			gc.WriteTo(append([]byte("guest:"), buf[:n]...), from)
		}
	}()
	c, err := net.Dial("udp", u.HostFwdAddr(0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got string
	for try := 0; try < 20 && got == ""; try++ {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 100)
		if n, err := c.Read(buf); err == nil {
			got = string(buf[:n])
		}
	}
	if got != "guest:ping" {
		t.Fatalf("through udp hostfwd: %q", got)
	}
}
