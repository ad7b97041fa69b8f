package usernet

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// dhcpMsg builds a client message (RFC 2131 §2) with the given options
// (code, value pairs flattened: code, len, value...).
func dhcpMsg(typ byte, mac [6]byte, xid uint32, flags uint16, ciaddr [4]byte, opts ...[]byte) []byte {
	b := make([]byte, dhcpFixedLen+4, 400)
	b[0], b[1], b[2] = dhcpOpRequest, dhcpHTypeEth, 6
	binary.BigEndian.PutUint32(b[4:], xid)
	binary.BigEndian.PutUint16(b[10:], flags)
	copy(b[12:], ciaddr[:])
	copy(b[28:], mac[:])
	binary.BigEndian.PutUint32(b[dhcpFixedLen:], dhcpCookie)
	b = append(b, optMsgType, 1, typ)
	for _, o := range opts {
		b = append(b, o...)
	}
	return append(b, optEnd)
}

// replyOpts decodes a server reply's options into a map.
func replyOpts(t *testing.T, b []byte) map[byte][]byte {
	t.Helper()
	if len(b) < dhcpFixedLen+4 || b[0] != dhcpOpReply || binary.BigEndian.Uint32(b[dhcpFixedLen:]) != dhcpCookie {
		t.Fatalf("not a BOOTREPLY: % x", b[:min(len(b), 16)])
	}
	m := map[byte][]byte{}
	o := b[dhcpFixedLen+4:]
	for i := 0; i < len(o); {
		if o[i] == optEnd {
			return m
		}
		if o[i] == optPad {
			i++
			continue
		}
		m[o[i]] = o[i+2 : i+2+int(o[i+1])]
		i += 2 + int(o[i+1])
	}
	t.Fatal("options without end")
	return nil
}

func testServer() *DHCPServer {
	return &DHCPServer{
		ServerIP: netip.MustParseAddr("10.0.2.2"), Mask: netip.MustParsePrefix("10.0.2.0/24"),
		First: netip.MustParseAddr("10.0.2.15"), DNS: netip.MustParseAddr("10.0.2.3"), Lease: time.Hour,
	}
}

func TestDHCPDiscoverOfferRequestAck(t *testing.T) {
	s := testServer()
	mac := [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	out := make([]byte, dhcpMaxReply)
	var to dhcpReply
	n := s.Handle(dhcpMsg(msgDiscover, mac, 0xabcd, 0, [4]byte{}), out, &to)
	if n < dhcpMinReply {
		t.Fatalf("offer of %d bytes", n)
	}
	o := replyOpts(t, out[:n])
	yi := [4]byte(out[16:20])
	if o[optMsgType][0] != msgOffer || yi != [4]byte{10, 0, 2, 15} || binary.BigEndian.Uint32(out[4:]) != 0xabcd || [6]byte(out[28:34]) != mac {
		t.Fatalf("offer: type %v yiaddr %v", o[optMsgType], yi)
	}
	// RFC 2132: 1 mask, 3 router, 6 DNS, 51 lease, 54 server id.
	if string(o[optSubnetMask]) != "\xff\xff\xff\x00" || string(o[optRouter]) != "\x0a\x00\x02\x02" ||
		string(o[optDNS]) != "\x0a\x00\x02\x03" || binary.BigEndian.Uint32(o[optLeaseTime]) != 3600 || string(o[optServerID]) != "\x0a\x00\x02\x02" {
		t.Fatalf("offer options %v", o)
	}
	// §4.1: no broadcast flag, no ciaddr: unicast to yiaddr at chaddr.
	if to.broadcast || to.ip != yi || to.mac != mac {
		t.Fatalf("offer sent to %+v", to)
	}
	req := dhcpMsg(msgRequest, mac, 0xabce, dhcpBroadcast, [4]byte{}, []byte{optRequested, 4, 10, 0, 2, 15}, []byte{optServerID, 4, 10, 0, 2, 2})
	n = s.Handle(req, out, &to)
	o = replyOpts(t, out[:n])
	if o[optMsgType][0] != msgAck || [4]byte(out[16:20]) != yi || !to.broadcast {
		t.Fatalf("request: %v to %+v", o[optMsgType], to)
	}
	// A second client gets the next address; the first keeps its own.
	mac2 := mac
	mac2[5]++
	s.Handle(dhcpMsg(msgDiscover, mac2, 1, 0, [4]byte{}), out, &to)
	if [4]byte(out[16:20]) != [4]byte{10, 0, 2, 16} {
		t.Fatalf("second client offered %v", out[16:20])
	}
	// Asking for another client's address: NAK, broadcast.
	n = s.Handle(dhcpMsg(msgRequest, mac, 2, 0, [4]byte{}, []byte{optRequested, 4, 10, 0, 2, 16}), out, &to)
	if o := replyOpts(t, out[:n]); o[optMsgType][0] != msgNak || !to.broadcast || o[optLeaseTime] != nil {
		t.Fatalf("wrong request answered %v to %+v", o, to)
	}
	// Renewing (ciaddr, no option 50): ACK, unicast to ciaddr.
	n = s.Handle(dhcpMsg(msgRequest, mac, 3, 0, yi), out, &to)
	if o := replyOpts(t, out[:n]); o[optMsgType][0] != msgAck || to.broadcast || to.ip != yi {
		t.Fatalf("renew %v to %+v", o[optMsgType], to)
	}
	// A REQUEST for another server releases our offer.
	s.Handle(dhcpMsg(msgRequest, mac2, 4, 0, [4]byte{}, []byte{optServerID, 4, 10, 0, 2, 99}), out, &to)
	if s.lookup(mac2, false) >= 0 {
		t.Fatal("offer kept after the client chose another server")
	}
	// RELEASE frees the binding.
	if s.Handle(dhcpMsg(msgRelease, mac, 5, 0, yi), out, &to) != 0 || s.lookup(mac, false) >= 0 {
		t.Fatal("release")
	}
}

func TestDHCPPoolExhaustedAndRefusals(t *testing.T) {
	s := testServer()
	out := make([]byte, dhcpMaxReply)
	var to dhcpReply
	for i := 0; i < PoolSize; i++ {
		if s.Handle(dhcpMsg(msgDiscover, [6]byte{2, 0, 0, 0, 0, byte(i)}, 1, 0, [4]byte{}), out, &to) == 0 {
			t.Fatalf("no offer for client %d", i)
		}
	}
	if s.Handle(dhcpMsg(msgDiscover, [6]byte{2, 0, 0, 0, 1, 0}, 1, 0, [4]byte{}), out, &to) != 0 {
		t.Fatal("offered past the pool")
	}
	good := dhcpMsg(msgDiscover, [6]byte{2, 0, 0, 0, 0, 1}, 1, 0, [4]byte{})
	for name, m := range map[string][]byte{
		"short":       good[:dhcpFixedLen+3],
		"bad cookie":  func() []byte { b := append([]byte(nil), good...); b[dhcpFixedLen] = 0; return b }(),
		"reply op":    func() []byte { b := append([]byte(nil), good...); b[0] = 2; return b }(),
		"not eth":     func() []byte { b := append([]byte(nil), good...); b[1] = 6; return b }(),
		"option past": append(good[:len(good)-1:len(good)-1], optRequested, 200, 1),
		"no type":     func() []byte { b := append([]byte(nil), good...); b[dhcpFixedLen+4] = optPad; return b }(),
		"relayed":     func() []byte { b := append([]byte(nil), good...); b[24] = 10; return b }(),
		"overload":    dhcpMsg(msgDiscover, [6]byte{2}, 1, 0, [4]byte{}, []byte{optOverload, 1, 3}),
	} {
		if s.Handle(m, out, &to) != 0 {
			t.Errorf("%s: answered", name)
		}
	}
	if s.Handle(good, out[:100], &to) != 0 {
		t.Error("answered into a short buffer")
	}
}

func TestDHCPHandleAllocatesNothing(t *testing.T) {
	s := testServer()
	out := make([]byte, dhcpMaxReply)
	m := dhcpMsg(msgDiscover, [6]byte{2, 0, 0, 0, 0, 1}, 1, 0, [4]byte{})
	var to dhcpReply
	if a := testing.AllocsPerRun(100, func() { s.Handle(m, out, &to) }); a != 0 {
		t.Fatalf("%v allocations per message", a)
	}
}

// FuzzDHCP: any datagram gets no reply or a well-formed one: a BOOTREPLY
// with the cookie, options ending in 255 inside the buffer, an address
// from the pool or none, at most 576 bytes (RFC 2131 §2).
func FuzzDHCP(f *testing.F) {
	f.Add(dhcpMsg(msgDiscover, [6]byte{2, 0, 0, 0, 0, 1}, 1, 0, [4]byte{}))
	f.Add(dhcpMsg(msgRequest, [6]byte{2, 0, 0, 0, 0, 1}, 1, 0x8000, [4]byte{}, []byte{optRequested, 4, 10, 0, 2, 15}))
	f.Add(dhcpMsg(msgInform, [6]byte{2}, 1, 0, [4]byte{10, 0, 2, 40}))
	f.Add([]byte{1, 1, 6})
	f.Fuzz(func(t *testing.T, msg []byte) {
		s := testServer()
		out := make([]byte, dhcpMaxReply)
		var to dhcpReply
		for i := 0; i < 2; i++ { // twice: with a binding made by the first
			n := s.Handle(msg, out, &to)
			if n == 0 {
				continue
			}
			if n > dhcpMaxReply {
				t.Fatalf("reply of %d bytes", n)
			}
			o := replyOpts(t, out[:n])
			typ := o[optMsgType]
			if len(typ) != 1 || (typ[0] != msgOffer && typ[0] != msgAck && typ[0] != msgNak) {
				t.Fatalf("reply type %v", typ)
			}
			yi := [4]byte(out[16:20])
			if yi != [4]byte{} && s.slotOf(yi) < 0 {
				t.Fatalf("yiaddr %v outside the pool", yi)
			}
		}
	})
}
