package usernet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"godm/internal/qemuopts"
	"godm/netback"
)

var guestMAC = [6]byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func newUser(t testing.TB, arg string, mod func(*Config)) *User {
	t.Helper()
	o, err := qemuopts.Parse("-netdev", arg, "type")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(o)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(&c)
	}
	u, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

// sendFrame transmits one frame as a NIC would, waiting for room.
func sendFrame(b netback.Backend, frame []byte) bool {
	for i := 0; i < 10000; i++ {
		f := b.TxFrame()
		if f == nil {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		f.SetLen(copy(f.Buf(), frame))
		b.Transmit(f)
		return true
	}
	return false
}

// dhcpFrame wraps a DHCP client message in UDP 68→67, IPv4 0.0.0.0 →
// 255.255.255.255, Ethernet broadcast (RFC 2131 §4.1).
func dhcpFrame(msg []byte) []byte {
	f := make([]byte, 14+20+8+len(msg))
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:], guestMAC[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := header.IPv4(f[14:])
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(20 + 8 + len(msg)), TTL: 64, Protocol: uint8(udp.ProtocolNumber),
		SrcAddr: header.IPv4Any, DstAddr: header.IPv4Broadcast})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(f[34:])
	u.Encode(&header.UDPFields{SrcPort: clientPort, DstPort: serverPort, Length: uint16(8 + len(msg))})
	copy(f[42:], msg)
	return f
}

// dhcpExchange sends msg and waits for the server's reply frame; it
// returns the Ethernet destination and the DHCP payload.
func dhcpExchange(t *testing.T, u *User, msg []byte) (dst []byte, reply []byte) {
	t.Helper()
	if !sendFrame(u, dhcpFrame(msg)) {
		t.Fatal("no room to send")
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f := u.RxPop()
		if f == nil {
			time.Sleep(time.Millisecond)
			continue
		}
		b := append([]byte(nil), f.Bytes()...)
		f.Release()
		if len(b) < 42 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
			continue
		}
		ip := header.IPv4(b[14:])
		if !ip.IsValid(len(b)-14) || ip.TransportProtocol() != udp.ProtocolNumber || !ip.IsChecksumValid() {
			continue
		}
		ud := header.UDP(ip.Payload())
		if ud.DestinationPort() != clientPort || ud.SourcePort() != serverPort {
			continue
		}
		return b[:6], ud.Payload()
	}
	t.Fatal("no DHCP reply within 10s")
	return nil, nil
}

// guest is a second gVisor stack on the NIC's side of the back-end: what
// a guest kernel is to the user-mode network.
type guest struct {
	s    *stack.Stack
	ep   *channel.Endpoint
	stop chan struct{}
	// pauseRx stops taking frames from the back-end (a guest whose rx
	// ring is full).
	pauseRx atomic.Bool
}

func startGuest(t testing.TB, b netback.Backend, addr, gw netip.Addr, bits int) *guest {
	g := &guest{stop: make(chan struct{})}
	g.s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	g.ep = channel.New(512, 1500, tcpip.LinkAddress(guestMAC[:]))
	if err := g.s.CreateNIC(1, ethernet.New(g.ep)); err != nil {
		t.Fatal(err)
	}
	g.s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(addr.As4()), PrefixLen: bits}}, stack.AddressProperties{})
	g.s.SetRouteTable([]tcpip.Route{{Destination: header.IPv4EmptySubnet, Gateway: tcpip.AddrFrom4(gw.As4()), NIC: 1}})
	rxc, txc := make(chan struct{}, 1), make(chan struct{}, 1)
	kick := func(c chan struct{}) func() {
		return func() {
			select {
			case c <- struct{}{}:
			default:
			}
		}
	}
	b.SetNotify(kick(rxc), kick(txc))
	// Guest → back-end.
	go func() {
		for {
			pkt := g.ep.ReadContext(ctxOf(g.stop))
			if pkt == nil {
				return
			}
			v := pkt.ToView()
			for f := b.TxFrame(); ; f = b.TxFrame() {
				if f != nil {
					f.SetLen(copy(f.Buf(), v.AsSlice()))
					b.Transmit(f)
					break
				}
				select {
				case <-txc:
				case <-time.After(time.Millisecond):
				case <-g.stop:
					return
				}
			}
			v.Release()
			pkt.DecRef()
		}
	}()
	// Back-end → guest.
	go func() {
		for {
			select {
			case <-g.stop:
				return
			default:
			}
			if g.pauseRx.Load() {
				time.Sleep(200 * time.Microsecond)
				continue
			}
			f := b.RxPop()
			if f == nil {
				select {
				case <-rxc:
				case <-time.After(time.Millisecond):
				case <-g.stop:
					return
				}
				continue
			}
			pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f.Bytes())})
			f.Release()
			g.ep.InjectInbound(0, pkt)
			pkt.DecRef()
		}
	}()
	t.Cleanup(func() {
		close(g.stop)
		g.s.Close()
		g.ep.Close()
	})
	return g
}

func ctxOf(stop chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	return ctx
}

func (g *guest) dial(ctx context.Context, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, err
	}
	return gonet.DialContextTCP(ctx, g.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(ap.Addr().As4()), Port: ap.Port()}, ipv4.ProtocolNumber)
}

// lease runs DISCOVER/OFFER/REQUEST/ACK on the wire and returns the
// address, router and mask bits the server gave.
func lease(t *testing.T, u *User) (netip.Addr, netip.Addr, int) {
	t.Helper()
	dst, offer := dhcpExchange(t, u, dhcpMsg(msgDiscover, guestMAC, 0x1111, 0, [4]byte{}))
	o := replyOpts(t, offer)
	if o[optMsgType][0] != msgOffer || string(dst) != string(guestMAC[:]) {
		t.Fatalf("offer %v sent to %x (unicast to chaddr expected)", o[optMsgType], dst)
	}
	yi := [4]byte(offer[16:20])
	_, ack := dhcpExchange(t, u, dhcpMsg(msgRequest, guestMAC, 0x1112, dhcpBroadcast, [4]byte{},
		[]byte{optRequested, 4, yi[0], yi[1], yi[2], yi[3]}, append([]byte{optServerID, 4}, o[optServerID]...)))
	a := replyOpts(t, ack)
	if a[optMsgType][0] != msgAck || [4]byte(ack[16:20]) != yi {
		t.Fatalf("ack %v for %v", a[optMsgType], ack[16:20])
	}
	mask := binary.BigEndian.Uint32(a[optSubnetMask])
	bits := 32 - len(fmt.Sprintf("%b", ^mask&0xffffffff)) + 0
	if ^mask == 0 {
		bits = 0
	}
	return netip.AddrFrom4(yi), netip.AddrFrom4([4]byte(a[optRouter])), bits
}

// The whole path: a guest gets a lease by DHCP, fetches a file over HTTP
// from a server on the host's loopback through the NAT (the gateway
// address is the host's loopback) with its checksum intact, and a host
// client reaches the guest's own server through hostfwd.
func TestGuestDHCPHTTPAndHostFwd(t *testing.T) {
	file := make([]byte, 3<<20)
	rand.Read(file)
	want := sha256.Sum256(file)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(file) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port

	u := newUser(t, "user,id=net0,net=10.0.2.0/24,hostfwd=tcp:127.0.0.1:0-:8080", nil)
	addr, gw, bits := lease(t, u)
	if addr != netip.MustParseAddr("10.0.2.15") || gw != netip.MustParseAddr("10.0.2.2") || bits != 24 {
		t.Fatalf("lease %s via %s /%d", addr, gw, bits)
	}
	g := startGuest(t, u, addr, gw, bits)

	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return g.dial(ctx, a) }}, Timeout: 60 * time.Second}
	resp, err := hc.Get(fmt.Sprintf("http://10.0.2.2:%d/file", port))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || sha256.Sum256(got) != want {
		t.Fatalf("fetched %d bytes (err %v), checksum mismatch", len(got), err)
	}

	// hostfwd: the guest serves on 8080; a host client on loopback
	// reaches it.
	gl, err := gonet.ListenTCP(g.s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(addr.As4()), Port: 8080}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer gl.Close()
	go func() {
		c, err := gl.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		io.ReadFull(c, buf)
		c.Write(append([]byte("guest:"), buf...))
	}()
	c, err := net.DialTimeout("tcp", u.HostFwdAddr(0).String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte("hello"))
	b, err := io.ReadAll(c)
	if string(b) != "guest:hello" {
		t.Fatalf("through hostfwd: %q %v", b, err)
	}
	if u.Stats().Bad.Load() != 0 {
		t.Errorf("%d frames counted bad", u.Stats().Bad.Load())
	}
}

// DNS: the guest's query to the DNS address reaches the host's resolver
// (here a stand-in on loopback that echoes) and the answer comes back.
// Under restrict=on, TCP to the host is refused and DNS is not forwarded;
// DHCP and hostfwd still work.
func TestGuestDNSAndRestrict(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var seen atomic.Int32
	go func() {
		buf := make([]byte, 512)
		for {
			n, a, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			seen.Add(1)
			pc.WriteTo(append([]byte("answer:"), buf[:n]...), a)
		}
	}()
	tl, _ := net.Listen("tcp", "127.0.0.1:0")
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tport := tl.Addr().(*net.TCPAddr).Port

	for _, restrict := range []bool{false, true} {
		arg := "user,id=n1"
		if restrict {
			arg += ",restrict=on"
		}
		u := newUser(t, arg, func(c *Config) { c.Resolver = pc.LocalAddr().String() })
		addr, gw, bits := lease(t, u)
		g := startGuest(t, u, addr, gw, bits)
		uc, err := gonet.DialUDP(g.s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{10, 0, 2, 3}), Port: 53}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		var answer string
		for try := 0; try < 5 && answer == ""; try++ {
			uc.Write([]byte("query"))
			uc.SetReadDeadline(time.Now().Add(time.Second))
			buf := make([]byte, 100)
			if n, err := uc.Read(buf); err == nil {
				answer = string(buf[:n])
			}
		}
		uc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		tc, terr := g.dial(ctx, fmt.Sprintf("10.0.2.2:%d", tport))
		cancel()
		if terr == nil {
			tc.Close()
		}
		if !restrict {
			if answer != "answer:query" || terr != nil {
				t.Fatalf("unrestricted: DNS %q, TCP %v", answer, terr)
			}
		} else {
			if answer != "" || terr == nil {
				t.Fatalf("restricted: DNS %q, TCP error %v", answer, terr)
			}
			if !strings.Contains(terr.Error(), "refused") {
				t.Fatalf("restricted TCP timed out instead of being refused: %v", terr)
			}
		}
	}
	if seen.Load() < 1 || seen.Load() > 5 {
		t.Fatalf("resolver saw %d queries (the restricted guest's must not reach it)", seen.Load())
	}
}

// Floods. The guest transmits with no pause: the back-end refuses past
// its queue and its memory stays its pool's. The host sends toward a
// guest that takes nothing: frames past the receive queue are dropped
// and counted; when the guest resumes, the transfer completes intact.
func TestFloodsBounded(t *testing.T) {
	u := newUser(t, "user,id=n2", func(c *Config) { c.Depth = 32 })
	junk := dhcpFrame(make([]byte, 300))
	junk[0] = 0x02 // unicast to nobody: the stack drops it
	refused := 0
	for i := 0; i < 20000; i++ {
		f := u.TxFrame()
		if f == nil {
			refused++
			continue
		}
		f.SetLen(copy(f.Buf(), junk))
		u.Transmit(f)
	}
	if u.TxQueue().Len() > 32 || u.Pool().Size() != 2*32+4 {
		t.Fatalf("tx queue %d, pool %d", u.TxQueue().Len(), u.Pool().Size())
	}
	t.Logf("guest flood: %d refused of 20000", refused)

	file := make([]byte, 4<<20)
	rand.Read(file)
	want := sha256.Sum256(file)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Write(file)
		c.Close()
	}()
	addr, gw, bits := lease(t, u)
	g := startGuest(t, u, addr, gw, bits)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := g.dial(ctx, fmt.Sprintf("10.0.2.2:%d", ln.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(c, first); err != nil {
		t.Fatal(err)
	}
	// The guest stops taking frames mid-transfer: TCP's window holds the
	// host back; the queue stays within its depth.
	g.pauseRx.Store(true)
	for i := 0; i < 50; i++ {
		if n := u.RxQueue().Len(); n > 32 {
			t.Fatalf("receive queue %d past its depth", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	// And a UDP flood from the host, which nothing holds back, while the
	// guest still takes nothing: dropped and counted past the queue.
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	defer pc.Close()
	stopFlood := make(chan struct{}) // (on a failure, pc.Close ends the flood)
	go func() {
		buf := make([]byte, 16)
		_, a, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		d := make([]byte, 1000)
		for {
			select {
			case <-stopFlood:
				return
			default:
			}
			if _, err := pc.WriteTo(d, a); err != nil {
				return
			}
		}
	}()
	uc, err := gonet.DialUDP(g.s, nil, &tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(gw.As4()), Port: uint16(pc.LocalAddr().(*net.UDPAddr).Port)}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	uc.Write([]byte("go"))
	deadline := time.Now().Add(20 * time.Second)
	for u.Stats().RxDropped.Load() < 100 && time.Now().Before(deadline) {
		if n := u.RxQueue().Len(); n > 32 {
			t.Fatalf("receive queue %d past its depth", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if u.Stats().RxDropped.Load() < 100 || u.RxQueue().Len() != 32 {
		t.Fatalf("paused guest under a UDP flood: queue %d, dropped %d", u.RxQueue().Len(), u.Stats().RxDropped.Load())
	}
	close(stopFlood)
	if free := u.Pool().Free(); free < u.Pool().Size()-32-32-4 {
		t.Fatalf("pool: %d of %d free", free, u.Pool().Size())
	}
	g.pauseRx.Store(false)
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	rest, err := io.ReadAll(c)
	if err != nil || sha256.Sum256(append(first, rest...)) != want {
		t.Fatalf("after the pause: %d bytes, %v, checksum mismatch", len(first)+len(rest), err)
	}
	t.Logf("host flood: %d frames dropped while the guest was paused", u.Stats().RxDropped.Load())
}

func TestParseUser(t *testing.T) {
	o, _ := qemuopts.Parse("-netdev", "user,id=u0,net=192.168.76.0/24,host=192.168.76.1,dns=192.168.76.9,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22", "type")
	c, err := Parse(o)
	if err != nil {
		t.Fatal(err)
	}
	if c.Host.String() != "192.168.76.1" || c.DNS.String() != "192.168.76.9" || c.DHCPStart.String() != "192.168.76.15" || !c.Restrict ||
		len(c.HostFwd) != 1 || c.HostFwd[0].Host.String() != "127.0.0.1:2222" || c.HostFwd[0].Guest.Port() != 22 {
		t.Fatalf("%+v", c)
	}
	for _, bad := range []string{
		"user,id=u,net=10.0.2.0/31", "user,id=u,net=fe80::/64", "user,id=u,host=10.0.3.2",
		"user,id=u,hostfwd=sctp::53-:53", "user,id=u,hostfwd=tcp:127.0.0.1:x-:22", "user,id=u,hostfwd=tcp::22",
		"user,id=u,hostfwd=tcp::2222-:0", "user,id=u,dhcpstart=10.0.2.250", "user,id=u,smb=/tmp", "user,id=u,restrict=maybe",
		"tap,id=u",
	} {
		o, err := qemuopts.Parse("-netdev", bad, "type")
		if err != nil {
			continue
		}
		if _, err := Parse(o); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
