package xensim

import (
	"testing"

	"godm/hyp"
)

// TestEventCountsSurviveWrap: the cumulative records beside the event
// ring (counts per domain and kind, ioreq-server details, latest event,
// violations, tallies) are exact after the ring wrapped many times, where
// walking the ring sees only its last events.
func TestEventCountsSurviveWrap(t *testing.T) {
	s := New(Config{EventCapacity: 8})
	defer s.Close()
	const dom, other = hyp.DomID(3), hyp.DomID(4)
	raised := s.NewTally(func(e Event) bool { return e.Kind == EventPCIIntx && e.Dev == 5 && e.Level })
	s.record(Event{Kind: EventIOReqServer, Dom: dom, Detail: "create"})
	s.record(Event{Kind: EventIOReqServer, Dom: dom, Detail: "enable"})
	s.violation(dom, 0, "early violation %d", 1)
	for i := range 1000 {
		s.record(Event{Kind: EventPCIIntx, Dom: dom, Dev: 5, Level: i%2 == 0})
		s.record(Event{Kind: EventMSI, Dom: other, Data: uint64(i)})
	}
	s.record(Event{Kind: EventShutdown, Dom: dom, Data: 2})
	s.record(Event{Kind: EventIOReqServer, Dom: dom, Detail: "destroy"})

	walked := 0
	for _, e := range s.Events() {
		if e.Kind == EventIOReqServer && e.Detail == "create" {
			walked++
		}
	}
	if walked != 0 {
		t.Fatalf("the ring still holds the create event (capacity 8): the test does not wrap")
	}
	for _, c := range []struct {
		dom    hyp.DomID
		kind   EventKind
		detail string
		want   uint64
	}{
		{dom, EventIOReqServer, "create", 1},
		{dom, EventIOReqServer, "enable", 1},
		{dom, EventIOReqServer, "destroy", 1},
		{dom, EventIOReqServer, "disable", 0},
		{dom, EventIOReqServer, "", 3},
		{dom, EventIOReqServer, "bogus", 0},
		{dom, EventPCIIntx, "", 1000},
		{dom, EventMSI, "", 0},
		{other, EventMSI, "", 1000},
		{dom, EventViolation, "", 1},
		{hyp.DomID(99), EventMSI, "", 0},
		{dom, EventKind(200), "", 0},
	} {
		if got := s.Count(c.dom, c.kind, c.detail); got != c.want {
			t.Errorf("Count(%v, %v, %q) = %d, want %d", c.dom, c.kind, c.detail, got, c.want)
		}
	}
	if e, ok := s.LastEvent(dom, EventShutdown); !ok || e.Data != 2 {
		t.Errorf("LastEvent(shutdown) = %v, %v", e, ok)
	}
	if e, ok := s.LastEvent(other, EventMSI); !ok || e.Data != 999 {
		t.Errorf("LastEvent(msi) = %v, %v", e, ok)
	}
	if _, ok := s.LastEvent(other, EventShutdown); ok {
		t.Error("LastEvent of a kind never recorded reported one")
	}
	if v := s.Violations(); len(v) != 1 || v[0].Detail != "early violation 1" || s.ViolationCount() != 1 {
		t.Errorf("Violations = %v (count %d), want the early one", v, s.ViolationCount())
	}
	if got := raised.N(); got != 500 {
		t.Errorf("tally of raised INTx = %d, want 500", got)
	}
	raised.Stop()
	s.record(Event{Kind: EventPCIIntx, Dom: dom, Dev: 5, Level: true})
	if got := raised.N(); got != 500 {
		t.Errorf("tally counted after Stop: %d", got)
	}
}

func TestEventRecordZeroAlloc(t *testing.T) {
	s := New(Config{EventCapacity: 8})
	defer s.Close()
	tl := s.NewTally(func(e Event) bool { return e.Level })
	e := Event{Kind: EventPCIIntx, Dom: 1, Level: true}
	s.record(e) // the domain's counters are created by its first event
	if n := testing.AllocsPerRun(100, func() { s.record(e) }); n != 0 {
		t.Errorf("record: %v allocs, want 0", n)
	}
	if tl.N() == 0 {
		t.Error("tally saw nothing")
	}
}
