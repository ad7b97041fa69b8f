package usernet

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"time"
)

// A minimal DHCPv4 server for the guest of a user-mode network: one
// subnet, a fixed pool of addresses bound to client hardware addresses,
// no relays, no option overload. Facts from RFC 2131 (protocol) and RFC
// 2132 (options).

// RFC 2131 §2 figure 1: the fixed part of a message is 236 bytes (op to
// file), followed by the magic cookie 99.130.83.99 (§3, RFC 2132 §2) and
// the options.
const (
	dhcpFixedLen  = 236
	dhcpCookie    = 0x63825363
	dhcpMinReply  = 300 // RFC 2131 §2: a client must accept up to 576; 300 is BOOTP's size (RFC 951), padded to it
	dhcpMaxReply  = 576
	dhcpOpRequest = 1 // BOOTREQUEST
	dhcpOpReply   = 2 // BOOTREPLY
	dhcpHTypeEth  = 1 // RFC 1700 hardware type Ethernet, hlen 6
	dhcpBroadcast = 0x8000
	serverPort    = 67
	clientPort    = 68
)

// RFC 2132 option codes and §9.6 message types.
const (
	optPad        = 0
	optSubnetMask = 1
	optRouter     = 3
	optDNS        = 6
	optRequested  = 50
	optLeaseTime  = 51
	optOverload   = 52
	optMsgType    = 53
	optServerID   = 54
	optEnd        = 255

	msgDiscover = 1
	msgOffer    = 2
	msgRequest  = 3
	msgDecline  = 4
	msgAck      = 5
	msgNak      = 6
	msgRelease  = 7
	msgInform   = 8
)

// PoolSize is the count of addresses the server leases, from the first
// (QEMU's slirp leases 16 from .15: slirp/src/bootp.c NB_BOOTP_CLIENTS).
const PoolSize = 16

// dhcpRequest is what the server reads from a client message.
type dhcpRequest struct {
	xid       uint32
	flags     uint16
	ciaddr    [4]byte
	giaddr    [4]byte
	chaddr    [6]byte
	msgType   byte
	requested [4]byte
	hasReq    bool
	serverID  [4]byte
	hasServer bool
}

// parseDHCP decodes a client message; it reports false for anything that
// is not a well-formed BOOTREQUEST from an Ethernet client with a DHCP
// message type. Every length is checked against the slice.
func parseDHCP(b []byte, r *dhcpRequest) bool {
	if len(b) < dhcpFixedLen+4 {
		return false
	}
	if b[0] != dhcpOpRequest || b[1] != dhcpHTypeEth || b[2] != 6 {
		return false
	}
	if binary.BigEndian.Uint32(b[dhcpFixedLen:]) != dhcpCookie {
		return false
	}
	*r = dhcpRequest{}
	r.xid = binary.BigEndian.Uint32(b[4:])
	r.flags = binary.BigEndian.Uint16(b[10:])
	copy(r.ciaddr[:], b[12:16])
	copy(r.giaddr[:], b[24:28])
	copy(r.chaddr[:], b[28:34])
	opts := b[dhcpFixedLen+4:]
	for i := 0; i < len(opts); {
		code := opts[i]
		if code == optPad {
			i++
			continue
		}
		if code == optEnd {
			break
		}
		if i+1 >= len(opts) {
			return false
		}
		l := int(opts[i+1])
		if i+2+l > len(opts) {
			return false
		}
		v := opts[i+2 : i+2+l]
		switch code {
		case optMsgType:
			if l != 1 {
				return false
			}
			r.msgType = v[0]
		case optRequested:
			if l != 4 {
				return false
			}
			copy(r.requested[:], v)
			r.hasReq = true
		case optServerID:
			if l != 4 {
				return false
			}
			copy(r.serverID[:], v)
			r.hasServer = true
		case optOverload:
			// RFC 2132 §9.3: options continue in sname/file. Clients
			// do not send it in practice; a message with it is refused
			// rather than half read.
			return false
		}
		i += 2 + l
	}
	return r.msgType >= msgDiscover && r.msgType <= msgInform
}

// DHCPServer hands out PoolSize addresses from First, with the network's
// mask, router and DNS server. It is safe for concurrent use; its table
// is fixed in size (a guest cycling hardware addresses gets NAKs, not
// more memory).
type DHCPServer struct {
	ServerIP netip.Addr // option 54, also the router (option 3)
	Mask     netip.Prefix
	First    netip.Addr
	DNS      netip.Addr // option 6; invalid for none
	Lease    time.Duration

	mu    sync.Mutex
	slots [PoolSize]struct {
		mac   [6]byte
		bound bool // offered or acknowledged
	}
}

// dhcpReply is where a reply goes (RFC 2131 §4.1).
type dhcpReply struct {
	broadcast bool
	ip        [4]byte
	mac       [6]byte
}

func (s *DHCPServer) addr(i int) [4]byte {
	a := s.First.As4()
	v := binary.BigEndian.Uint32(a[:]) + uint32(i)
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], v)
	return out
}

// slotOf returns the slot of ip in the pool, -1 if outside.
func (s *DHCPServer) slotOf(ip [4]byte) int {
	a := s.First.As4()
	d := int64(binary.BigEndian.Uint32(ip[:])) - int64(binary.BigEndian.Uint32(a[:]))
	if d < 0 || d >= PoolSize {
		return -1
	}
	return int(d)
}

// lookup finds the slot bound to mac, or binds a free one when alloc.
func (s *DHCPServer) lookup(mac [6]byte, alloc bool) int {
	free := -1
	for i := range s.slots {
		if s.slots[i].bound && s.slots[i].mac == mac {
			return i
		}
		if !s.slots[i].bound && free < 0 {
			free = i
		}
	}
	if !alloc || free < 0 {
		return -1
	}
	s.slots[free].bound = true
	s.slots[free].mac = mac
	return free
}

// Handle answers one client message into out (at least dhcpMaxReply
// bytes) and returns the reply's length (0 for no reply) and where it
// goes. It allocates nothing.
func (s *DHCPServer) Handle(msg, out []byte, to *dhcpReply) int {
	var r dhcpRequest
	if !parseDHCP(msg, &r) || len(out) < dhcpMaxReply {
		return 0
	}
	if r.giaddr != [4]byte{} {
		return 0 // relayed: there is no relay on a user-mode network
	}
	sid := s.ServerIP.As4()
	s.mu.Lock()
	defer s.mu.Unlock()
	var typ byte
	var yiaddr [4]byte
	switch r.msgType {
	case msgDiscover:
		// RFC 2131 §4.3.1: offer the client's current binding, else a
		// free address.
		i := s.lookup(r.chaddr, true)
		if i < 0 {
			return 0 // pool exhausted: no offer
		}
		typ, yiaddr = msgOffer, s.addr(i)
	case msgRequest:
		// §4.3.2: a REQUEST naming another server (SELECTING) is the
		// client declining our offer.
		if r.hasServer && r.serverID != sid {
			if i := s.lookup(r.chaddr, false); i >= 0 {
				s.slots[i].bound = false
			}
			return 0
		}
		want := r.requested
		if !r.hasReq {
			want = r.ciaddr // RENEWING/REBINDING: ciaddr holds the address
		}
		i := s.lookup(r.chaddr, false)
		if i < 0 {
			// INIT-REBOOT after our restart: grant the address if it is
			// in the pool and free.
			j := s.slotOf(want)
			if j >= 0 && !s.slots[j].bound {
				s.slots[j].bound, s.slots[j].mac = true, r.chaddr
				i = j
			}
		}
		if i < 0 || s.addr(i) != want {
			typ = msgNak
		} else {
			typ, yiaddr = msgAck, want
		}
	case msgRelease, msgDecline:
		// §4.3.4, §4.3.3: free the client's binding (a declined address
		// is simply released: the table has no quarantine).
		if i := s.lookup(r.chaddr, false); i >= 0 {
			s.slots[i].bound = false
		}
		return 0
	case msgInform:
		// §4.3.5: configuration only, no lease, no yiaddr, unicast to
		// ciaddr.
		typ = msgAck
	default:
		return 0
	}
	n := s.reply(out, &r, typ, yiaddr)
	// §4.1: NAKs and broadcast-flagged replies are broadcast; a client
	// with ciaddr gets unicast there; otherwise unicast to yiaddr at
	// chaddr.
	*to = dhcpReply{mac: r.chaddr}
	switch {
	case typ == msgNak || r.flags&dhcpBroadcast != 0:
		to.broadcast = true
	case r.ciaddr != [4]byte{}:
		to.ip = r.ciaddr
	default:
		to.ip = yiaddr
	}
	return n
}

func (s *DHCPServer) reply(out []byte, r *dhcpRequest, typ byte, yiaddr [4]byte) int {
	clear(out[:dhcpMaxReply])
	out[0], out[1], out[2] = dhcpOpReply, dhcpHTypeEth, 6
	binary.BigEndian.PutUint32(out[4:], r.xid)
	binary.BigEndian.PutUint16(out[10:], r.flags)
	if r.msgType == msgInform {
		copy(out[12:], r.ciaddr[:])
	}
	copy(out[16:], yiaddr[:])
	copy(out[28:], r.chaddr[:])
	binary.BigEndian.PutUint32(out[dhcpFixedLen:], dhcpCookie)
	o := out[dhcpFixedLen+4:]
	i := 0
	put := func(code byte, v []byte) {
		o[i], o[i+1] = code, byte(len(v))
		copy(o[i+2:], v)
		i += 2 + len(v)
	}
	put(optMsgType, []byte{typ})
	sid := s.ServerIP.As4()
	put(optServerID, sid[:])
	if typ != msgNak {
		if r.msgType != msgInform {
			var lt [4]byte
			binary.BigEndian.PutUint32(lt[:], uint32(s.Lease/time.Second))
			put(optLeaseTime, lt[:])
		}
		var m [4]byte
		binary.BigEndian.PutUint32(m[:], ^uint32(0)<<(32-s.Mask.Bits()))
		put(optSubnetMask, m[:])
		put(optRouter, sid[:])
		if s.DNS.IsValid() {
			d := s.DNS.As4()
			put(optDNS, d[:])
		}
	}
	o[i] = optEnd
	i++
	n := dhcpFixedLen + 4 + i
	if n < dhcpMinReply {
		n = dhcpMinReply
	}
	return n
}
