package ioreq

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestNewSharedPageRejects(t *testing.T) {
	page := newPage(t)
	tests := []struct {
		name  string
		page  []byte
		vcpus int
	}{
		{"zero vcpus", page, 0},
		{"too many vcpus", page, MaxVCPUs + 1},
		{"short page", page[:64], 3},
		{"misaligned", page[4:], 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSharedPage(tt.page, tt.vcpus); !errors.Is(err, ErrBadPage) {
				t.Fatalf("NewSharedPage: got %v, want ErrBadPage", err)
			}
		})
	}
	if sp, err := NewSharedPage(page, MaxVCPUs); err != nil || sp.Len() != MaxVCPUs {
		t.Fatalf("NewSharedPage(%d): %v", MaxVCPUs, err)
	}
}

func TestSlotClaimOnlyWhenReady(t *testing.T) {
	for _, st := range []State{StateNone, StateReady, StateInProcess, StateRespReady, 9} {
		page := newPage(t)
		sp, _ := NewSharedPage(page, 2)
		s := sp.Slot(1)
		post(s, Request{Addr: 0x3f8, Data: 0x41, Count: 1, Size: 1, Type: TypePIO})
		w := atomic.LoadUint32(s.word)
		atomic.StoreUint32(s.word, withState(w, st))
		before := append([]byte(nil), page...)
		var r Request
		_, ok := s.Claim(&r)
		if want := st == StateReady; ok != want {
			t.Fatalf("state %d: Claim ok = %v, want %v", st, ok, want)
		}
		if !ok && string(before) != string(page) {
			t.Fatalf("state %d: Claim modified a slot it did not claim", st)
		}
	}
}

func TestSlotRoundTrip(t *testing.T) {
	page := newPage(t)
	// Xen's fields around ours: vp_eport and _pad0 must survive.
	page[32+24] = 0x77
	page[32+28] = 0xaa
	page[32+29] = 0xbb
	sp, err := NewSharedPage(page, 4)
	if err != nil {
		t.Fatal(err)
	}
	s := sp.Slot(1)
	want := Request{Addr: 0xfee00000, Data: 0xdead, Count: 3, Size: 4, Type: TypeCopy, Read: true, DataIsPtr: true, DF: true, VCPU: 1}
	post(s, want)
	if !s.Ready() || s.VPEport() != 0x77 {
		t.Fatalf("Ready=%v VPEport=%#x, want true 0x77", s.Ready(), s.VPEport())
	}
	var got Request
	word, ok := s.Claim(&got)
	if !ok {
		t.Fatal("Claim of a READY slot failed")
	}
	if got != want {
		t.Fatalf("Claim decoded %+v, want %+v", got, want)
	}
	if s.State() != StateInProcess {
		t.Fatalf("state after claim %d, want INPROCESS", s.State())
	}
	if _, ok := s.Claim(&got); ok {
		t.Fatal("second Claim succeeded")
	}
	if !s.Respond(word, 0x1234, true) {
		t.Fatal("Respond failed")
	}
	if s.State() != StateRespReady || slotData(s) != 0x1234 {
		t.Fatalf("after Respond: state %d data %#x", s.State(), slotData(s))
	}
	if page[32+24] != 0x77 || page[32+28] != 0xaa || page[32+29] != 0xbb || page[32+31] != uint8(TypeCopy) {
		t.Fatalf("Respond clobbered vp_eport/_pad0/type: % x", page[32:64])
	}
	// Flags other than state survive.
	if page[32+30]&^0x0f != want.Flags() {
		t.Fatalf("flags byte %#x, want %#x|state", page[32+30], want.Flags())
	}
}

func TestSlotRespondOnlyWhileInProcess(t *testing.T) {
	page := newPage(t)
	sp, _ := NewSharedPage(page, 1)
	s := sp.Slot(0)
	post(s, Request{Data: 5, Count: 1, Size: 1})
	var r Request
	word, _ := s.Claim(&r)
	// Someone else moved the slot on (a hostile or confused writer).
	atomic.StoreUint32(s.word, withState(word, StateNone))
	if s.Respond(word, 99, true) {
		t.Fatal("Respond succeeded on a slot no longer INPROCESS")
	}
	if slotData(s) != 5 || s.State() != StateNone {
		t.Fatalf("Respond wrote to a foreign slot: data %d state %d", slotData(s), s.State())
	}
}
