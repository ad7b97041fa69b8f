// Package usernet is godm's user-mode network back-end ("-netdev user"):
// the guest's frames go into a gVisor network stack (gvisor.dev/gvisor
// pkg/tcpip) that plays the gateway: it serves DHCP, forwards DNS to the
// host's resolver, translates the guest's TCP and UDP flows into host
// sockets (the gateway address meaning the host's loopback, as QEMU's
// slirp does), and forwards host ports to the guest (hostfwd). It needs
// no privilege and no tap. restrict=on cuts the guest off from the host
// network (hostfwd still reaches it).
package usernet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
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
	"gvisor.dev/gvisor/pkg/waiter"

	"godm/netback"
)

const nicID = 1

// tcpBuf is each NAT connection's gVisor send and receive buffer.
const tcpBuf = 256 << 10

// User is a user-mode network back-end: a netback.Backend whose far side
// is a gVisor stack.
type User struct {
	*netback.Port
	cfg   Config
	stack *stack.Stack
	link  *linkEP
	dhcp  *DHCPServer

	tcpSlots, udpSlots chan struct{}
	mu                 sync.Mutex
	closers            []io.Closer
	hostAddrs          []net.Addr // bound hostfwd listeners, in HostFwd order
	ctx                context.Context
	cancel             context.CancelFunc
	closing            bool // under mu: no new goroutine joins wg
	wg                 sync.WaitGroup
}

// begin counts one more goroutine Close must wait for; false once Close
// has started.
func (u *User) begin() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closing {
		return false
	}
	u.wg.Add(1)
	return true
}

// linkEP is the gVisor link endpoint of the guest's wire: what the stack
// sends is copied into a pool frame toward the guest, dropped and
// counted when the guest's queue is full (TCP retransmits).
type linkEP struct {
	*channel.Endpoint
	port *netback.Port
}

func (l *linkEP) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := 0
	for _, pkt := range pkts.AsSlice() {
		n++
		f := l.port.Pool().Get()
		if f == nil {
			l.port.Stats().RxDropped.Add(1)
			continue
		}
		b, k := f.Buf(), 0
		for _, s := range pkt.AsSlices() {
			if k+len(s) > len(b) {
				k = -1
				break
			}
			k += copy(b[k:], s)
		}
		if k < 0 {
			l.port.Stats().Bad.Add(1)
			f.Release()
			continue
		}
		f.SetLen(k)
		l.port.Deliver(f)
	}
	return n, nil
}

// New starts a user-mode network.
func New(c Config) (*User, error) {
	if c.MaxFlows <= 0 {
		c.MaxFlows = 128
	}
	if c.Resolver == "" && !c.Restrict {
		c.Resolver = hostResolver()
	}
	u := &User{
		Port:     netback.NewPort(netback.PortConfig{Depth: c.Depth}),
		cfg:      c,
		tcpSlots: make(chan struct{}, c.MaxFlows),
		udpSlots: make(chan struct{}, c.MaxFlows),
	}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.dhcp = &DHCPServer{ServerIP: c.Host, Mask: c.Net, First: c.DHCPStart, DNS: c.DNS, Lease: 24 * time.Hour}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	u.stack = s
	// Per-connection memory: gVisor's defaults let each TCP buffer grow
	// to 4 MiB; a guest opening MaxFlows connections must not make that
	// hundreds of MiB. tcpBuf each way per connection.
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &tcpip.TCPReceiveBufferSizeRangeOption{Min: 4096, Default: tcpBuf, Max: tcpBuf})
	s.SetTransportProtocolOption(tcp.ProtocolNumber, &tcpip.TCPSendBufferSizeRangeOption{Min: 4096, Default: tcpBuf, Max: tcpBuf})
	u.link = &linkEP{Endpoint: channel.New(1, 1500, tcpip.LinkAddress(c.MAC[:])), port: u.Port}
	if err := s.CreateNIC(nicID, ethernet.New(u.link)); err != nil {
		u.Close()
		return nil, fmt.Errorf("netdev %s: create NIC: %v", c.ID, err)
	}
	for _, a := range []netip.Addr{c.Host, c.DNS} {
		pa := tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(a.As4()), PrefixLen: c.Net.Bits()}}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			u.Close()
			return nil, fmt.Errorf("netdev %s: address %s: %v", c.ID, a, err)
		}
	}
	// The gateway answers for every address the guest targets (NAT):
	// promiscuous to accept them, spoofing to answer from them.
	s.SetPromiscuousMode(nicID, true)
	s.SetSpoofing(nicID, true)
	sub, _ := tcpip.NewSubnet(tcpip.AddrFrom4(c.Net.Addr().As4()), tcpip.MaskFromBytes(prefixMask(c.Net.Bits())))
	s.SetRouteTable([]tcpip.Route{{Destination: sub, NIC: nicID}, {Destination: header.IPv4EmptySubnet, NIC: nicID}})

	tf := tcp.NewForwarder(s, 0, 64, u.forwardTCP)
	s.SetTransportProtocolHandler(tcp.ProtocolNumber, tf.HandlePacket)
	uf := udp.NewForwarder(s, u.forwardUDP)
	s.SetTransportProtocolHandler(udp.ProtocolNumber, uf.HandlePacket)

	if err := u.startDHCP(); err != nil {
		u.Close()
		return nil, fmt.Errorf("netdev %s: DHCP server: %v", c.ID, err)
	}
	for _, h := range c.HostFwd {
		if err := u.startHostFwd(h); err != nil {
			u.Close()
			return nil, fmt.Errorf("netdev %s: hostfwd %s: %v", c.ID, h.Host, err)
		}
	}
	u.Go(u.pump)
	return u, nil
}

func prefixMask(bits int) []byte {
	m := ^uint32(0) << (32 - bits)
	return []byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}

// hostResolver is the first nameserver of /etc/resolv.conf, port 53.
func hostResolver() string {
	f, err := os.Open("/etc/resolv.conf")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 1<<16))
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "nameserver" {
			if a, err := netip.ParseAddr(fs[1]); err == nil {
				return netip.AddrPortFrom(a, 53).String()
			}
		}
	}
	return ""
}

// HostFwdAddr is the host address the i-th hostfwd listens on (its port
// chosen by the system when 0 was given).
func (u *User) HostFwdAddr(i int) net.Addr {
	u.mu.Lock()
	defer u.mu.Unlock()
	if i < 0 || i >= len(u.hostAddrs) {
		return nil
	}
	return u.hostAddrs[i]
}

// pump moves the guest's frames into the stack.
func (u *User) pump() {
	tx := u.TxQueue()
	for {
		f := tx.Pop()
		if f == nil {
			select {
			case <-tx.Ready:
				continue
			case <-u.Stopping():
				return
			}
		}
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f.Bytes())})
		f.Release()
		// ethernet.Endpoint parses the Ethernet header; a frame too short
		// for it or of an unknown type is dropped there.
		u.link.InjectInbound(0, pkt)
		pkt.DecRef()
	}
}

func (u *User) track(c io.Closer) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ctx.Err() != nil {
		return false
	}
	u.closers = append(u.closers, c)
	return true
}

func (u *User) untrack(c io.Closer) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, x := range u.closers {
		if x == c {
			u.closers = append(u.closers[:i], u.closers[i+1:]...)
			return
		}
	}
}

// hostTarget maps where the guest aims to a host address: the gateway
// is the host's loopback; the DNS address is the resolver (UDP only).
func (u *User) hostTarget(a tcpip.Address, port uint16) (string, bool) {
	ip := netip.AddrFrom4(a.As4())
	switch ip {
	case u.cfg.Host:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port).String(), true
	case u.cfg.DNS:
		return "", false
	}
	if u.cfg.Net.Contains(ip) {
		return "", false // the guest's own network: nothing there
	}
	// Only unicast beyond the host: no broadcast or multicast sent on the
	// host's networks in the guest's name, no loopback other than through
	// the gateway address, no link-local (169.254/16: a cloud's metadata
	// service is not the guest's to reach).
	if !ip.IsGlobalUnicast() || port == 0 {
		return "", false
	}
	return netip.AddrPortFrom(ip, port).String(), true
}

func (u *User) forwardTCP(r *tcp.ForwarderRequest) {
	id := r.ID()
	target, ok := u.hostTarget(id.LocalAddress, id.LocalPort)
	if u.cfg.Restrict || !ok {
		r.Complete(true)
		return
	}
	select {
	case u.tcpSlots <- struct{}{}:
	default:
		r.Complete(true) // too many flows: refused, not queued
		return
	}
	if !u.begin() {
		<-u.tcpSlots
		r.Complete(true)
		return
	}
	go func() {
		defer u.wg.Done()
		defer func() { <-u.tcpSlots }()
		var d net.Dialer
		ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
		hc, err := d.DialContext(ctx, "tcp", target)
		cancel()
		if err != nil {
			r.Complete(true)
			return
		}
		var wq waiter.Queue
		ep, terr := r.CreateEndpoint(&wq)
		if terr != nil {
			r.Complete(true)
			hc.Close()
			return
		}
		r.Complete(false)
		gc := gonet.NewTCPConn(&wq, ep)
		u.splice(gc, hc)
	}()
}

// splice copies both ways until either side ends, then closes both.
func (u *User) splice(a, b net.Conn) {
	if !u.track(a) {
		a.Close()
		b.Close()
		return
	}
	u.track(b)
	defer func() {
		u.untrack(a)
		u.untrack(b)
	}()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}

const udpIdle = 60 * time.Second

func (u *User) forwardUDP(r *udp.ForwarderRequest) bool {
	id := r.ID()
	ip := netip.AddrFrom4(id.LocalAddress.As4())
	var target string
	switch {
	case u.cfg.Restrict:
		return true // swallowed: no path out
	case ip == u.cfg.DNS && id.LocalPort == 53:
		if u.cfg.Resolver == "" {
			return true
		}
		target = u.cfg.Resolver
	default:
		var ok bool
		if target, ok = u.hostTarget(id.LocalAddress, id.LocalPort); !ok {
			return true
		}
	}
	select {
	case u.udpSlots <- struct{}{}:
	default:
		return true
	}
	var wq waiter.Queue
	ep, terr := r.CreateEndpoint(&wq)
	if terr != nil {
		<-u.udpSlots
		return true
	}
	gc := gonet.NewUDPConn(&wq, ep)
	if !u.begin() {
		<-u.udpSlots
		gc.Close()
		return true
	}
	go func() {
		defer u.wg.Done()
		defer func() { <-u.udpSlots }()
		hc, err := net.Dial("udp", target)
		if err != nil {
			gc.Close()
			return
		}
		if !u.track(gc) {
			gc.Close()
			hc.Close()
			return
		}
		u.track(hc)
		defer func() {
			u.untrack(gc)
			u.untrack(hc)
			gc.Close()
			hc.Close()
		}()
		done := make(chan struct{}, 2)
		cp := func(dst, src net.Conn) {
			buf := make([]byte, 65536)
			for {
				src.SetReadDeadline(time.Now().Add(udpIdle))
				n, err := src.Read(buf)
				if err != nil {
					break
				}
				dst.Write(buf[:n])
			}
			dst.SetReadDeadline(time.Now()) // end the other direction too
			done <- struct{}{}
		}
		go cp(hc, gc)
		go cp(gc, hc)
		<-done
		<-done
	}()
	return true
}

// startDHCP binds the server to UDP port 67 on the guest's wire.
func (u *User) startDHCP() error {
	var wq waiter.Queue
	ep, err := u.stack.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if err != nil {
		return errors.New(err.String())
	}
	ep.SocketOptions().SetBroadcast(true)
	if err := ep.Bind(tcpip.FullAddress{NIC: nicID, Port: serverPort}); err != nil {
		ep.Close()
		return errors.New(err.String())
	}
	conn := gonet.NewUDPConn(&wq, ep)
	u.track(conn)
	if !u.begin() {
		return errors.New("closed")
	}
	go func() {
		defer u.wg.Done()
		in := make([]byte, 1500)
		out := make([]byte, dhcpMaxReply)
		for {
			n, _, err := conn.ReadFrom(in)
			if err != nil {
				return
			}
			var to dhcpReply
			m := u.dhcp.Handle(in[:n], out, &to)
			if m == 0 {
				continue
			}
			dst := &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort}
			if !to.broadcast {
				dst.IP = net.IP(to.ip[:])
				// RFC 2131 §4.1: unicast to yiaddr at chaddr, before the
				// client can answer ARP.
				u.stack.AddStaticNeighbor(nicID, ipv4.ProtocolNumber, tcpip.AddrFrom4(to.ip), tcpip.LinkAddress(to.mac[:]))
			}
			conn.WriteTo(out[:m], dst)
		}
	}()
	return nil
}

// startHostFwd listens on the host and connects each accepted connection
// to the guest.
func (u *User) startHostFwd(h HostFwd) error {
	if h.UDP {
		return u.startHostFwdUDP(h)
	}
	ln, err := net.Listen("tcp", h.Host.String())
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.hostAddrs = append(u.hostAddrs, ln.Addr())
	u.mu.Unlock()
	u.track(ln)
	guest := h.Guest.Addr()
	if guest.IsUnspecified() {
		guest = u.cfg.DHCPStart
	}
	remote := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(guest.As4()), Port: h.Guest.Port()}
	local := tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(u.cfg.Host.As4())}
	if !u.begin() {
		return errors.New("closed")
	}
	go func() {
		defer u.wg.Done()
		for {
			hc, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case u.tcpSlots <- struct{}{}:
			default:
				hc.Close()
				continue
			}
			if !u.begin() {
				<-u.tcpSlots
				hc.Close()
				return
			}
			go func() {
				defer u.wg.Done()
				defer func() { <-u.tcpSlots }()
				ctx, cancel := context.WithTimeout(u.ctx, 10*time.Second)
				gc, err := gonet.DialTCPWithBind(ctx, u.stack, local, remote, ipv4.ProtocolNumber)
				cancel()
				if err != nil {
					hc.Close()
					return
				}
				u.splice(gc, hc)
			}()
		}
	}()
	return nil
}

// startHostFwdUDP binds the host port; each host peer (address and
// port) gets its own flow to the guest, from the gateway address, ended
// after udpIdle without traffic; at most MaxFlows peers at once.
func (u *User) startHostFwdUDP(h HostFwd) error {
	pc, err := net.ListenPacket("udp", h.Host.String())
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.hostAddrs = append(u.hostAddrs, pc.LocalAddr())
	u.mu.Unlock()
	u.track(pc)
	guest := h.Guest.Addr()
	if guest.IsUnspecified() {
		guest = u.cfg.DHCPStart
	}
	remote := &tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(guest.As4()), Port: h.Guest.Port()}
	local := &tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFrom4(u.cfg.Host.As4())}
	if !u.begin() {
		return errors.New("closed")
	}
	go func() {
		defer u.wg.Done()
		var fmu sync.Mutex
		flows := map[netip.AddrPort]*gonet.UDPConn{}
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			peer := from.(*net.UDPAddr).AddrPort()
			fmu.Lock()
			gc := flows[peer]
			fmu.Unlock()
			if gc == nil {
				select {
				case u.udpSlots <- struct{}{}:
				default:
					continue // too many peers: dropped
				}
				gc, err = gonet.DialUDP(u.stack, local, remote, ipv4.ProtocolNumber)
				if err != nil || !u.begin() {
					if err == nil {
						gc.Close()
					}
					<-u.udpSlots
					continue
				}
				u.track(gc)
				fmu.Lock()
				flows[peer] = gc
				fmu.Unlock()
				go func(gc *gonet.UDPConn) {
					defer u.wg.Done()
					defer func() { <-u.udpSlots }()
					rb := make([]byte, 65536)
					for {
						gc.SetReadDeadline(time.Now().Add(udpIdle))
						m, err := gc.Read(rb)
						if err != nil {
							break
						}
						pc.WriteTo(rb[:m], net.UDPAddrFromAddrPort(peer))
					}
					fmu.Lock()
					delete(flows, peer)
					fmu.Unlock()
					u.untrack(gc)
					gc.Close()
				}(gc)
			}
			gc.Write(buf[:n])
		}
	}()
	return nil
}

// Close stops the network: listeners, flows, the stack, the port.
func (u *User) Close() error {
	u.mu.Lock()
	if u.cancel != nil {
		u.cancel()
	}
	u.closing = true
	cs := u.closers
	u.closers = nil
	u.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
	u.wg.Wait()
	u.Port.Shutdown()
	if u.stack != nil {
		u.stack.Close()
		u.stack.Wait()
	}
	return nil
}
