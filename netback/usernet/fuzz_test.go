package usernet

import (
	"sync"
	"testing"
	"time"

	"godm/netback"
)

var (
	fuzzOnce sync.Once
	fuzzUser *User
)

// FuzzGuestFrame: whatever frame a guest transmits (runt, giant, bad
// Ethernet/IP/UDP/TCP headers, DHCP garbage), the user-mode network
// takes it without crashing and gives every buffer back.
func FuzzGuestFrame(f *testing.F) {
	good := dhcpFrame(dhcpMsg(msgDiscover, guestMAC, 7, 0, [4]byte{}))
	f.Add(good)
	f.Add(good[:13])
	f.Add(good[:20])
	f.Add(make([]byte, netback.MaxFrame))
	arp := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 0x08, 0x06},
		0, 1, 8, 0, 6, 4, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56, 10, 0, 2, 15, 0, 0, 0, 0, 0, 0, 10, 0, 2, 2)
	f.Add(arp)
	f.Fuzz(func(t *testing.T, frame []byte) {
		fuzzOnce.Do(func() {
			o := Config{}
			c, err := parseDefaults(o)
			if err != nil {
				panic(err)
			}
			c.Restrict = true // nothing reaches the host from a fuzzer
			fuzzUser, err = New(c)
			if err != nil {
				panic(err)
			}
		})
		u := fuzzUser
		// The stack gives transmit buffers back as it takes frames; one
		// that never comes back is a leak, reported rather than waited
		// for (an unbounded wait would hang the fuzz worker).
		fr := u.TxFrame()
		for deadline := time.Now().Add(10 * time.Second); fr == nil; fr = u.TxFrame() {
			if time.Now().After(deadline) {
				t.Fatal("no transmit buffer free after 10 s: the stack keeps them")
			}
			time.Sleep(time.Millisecond)
		}
		n := copy(fr.Buf(), frame) // a giant is cut at the buffer, still past MaxLen
		fr.SetLen(n)
		bad := u.Stats().Bad.Load()
		u.Transmit(fr)
		if (n < 14 || n > u.MaxLen()) && u.Stats().Bad.Load() == bad {
			t.Fatalf("a %d-byte frame was not counted bad", n)
		}
		// Drain what the stack answers so the queues never stay full.
		for g := u.RxPop(); g != nil; g = u.RxPop() {
			if len(g.Bytes()) < 14 || len(g.Bytes()) > u.MaxLen() {
				t.Fatalf("the stack sent a %d-byte frame", len(g.Bytes()))
			}
			g.Release()
		}
	})
}
