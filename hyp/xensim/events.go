package xensim

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"godm/hyp"
)

// EventKind says what an Event records.
type EventKind uint8

// Recorded event kinds. The comment says which Event fields are set.
const (
	// EventPCIIntx: XEN_DMOP_set_pci_intx_level. Dev, Pin (INTx 0-3 =
	// A-D), Level.
	EventPCIIntx EventKind = iota + 1
	// EventPCILinkRoute: XEN_DMOP_set_pci_link_route. Link, IRQ (0 =
	// disabled).
	EventPCILinkRoute
	// EventISAIRQ: XEN_DMOP_set_isa_irq_level. IRQ, Level.
	EventISAIRQ
	// EventMSI: XEN_DMOP_inject_msi. Addr, Data.
	EventMSI
	// EventShutdown: XEN_DMOP_remote_shutdown. Data = reason.
	EventShutdown
	// EventTrackDirtyVRAM: XEN_DMOP_track_dirty_vram. First, Nr.
	EventTrackDirtyVRAM
	// EventModifiedMemory: one per extent of XEN_DMOP_modified_memory.
	// First, Nr.
	EventModifiedMemory
	// EventSetMemType: XEN_DMOP_set_mem_type (pages changed). First, Nr,
	// Type (HVMMEM_*).
	EventSetMemType
	// EventInjectEvent: XEN_DMOP_inject_event. VCPU, Data = vector, Type,
	// Addr = cr2, First = error code, Nr = instruction length.
	EventInjectEvent
	// EventMapMemType: XEN_DMOP_map_mem_type_to_ioreq_server. Server,
	// Type, Data = flags.
	EventMapMemType
	// EventPinCacheAttr: XEN_DMOP_pin_memory_cacheattr. First = start,
	// Nr = end (inclusive gfns), Type.
	EventPinCacheAttr
	// EventRelocateMemory: XEN_DMOP_relocate_memory. First = source gfn,
	// Addr = destination gfn, Nr = pages moved.
	EventRelocateMemory
	// EventGuestNotify: the device model notified an event channel whose
	// other end is an ordinary guest port. Data = guest port.
	EventGuestNotify
	// EventViolation: the device model broke the ioreq protocol (or Xen
	// would have logged an error). VCPU, Detail.
	EventViolation
	// EventIOReqServer: an ioreq server was created, enabled, disabled or
	// destroyed. Server, Detail ("create", "enable", "disable",
	// "destroy").
	EventIOReqServer
	// EventMapPIRQ: PHYSDEVOP_map_pirq. Type (MAP_PIRQ_TYPE_*), Addr =
	// index (GSI or MSI entry), Data = PIRQ, First = bus, Nr = devfn.
	EventMapPIRQ
	// EventUnmapPIRQ: PHYSDEVOP_unmap_pirq. Data = PIRQ.
	EventUnmapPIRQ
	// EventBindPtIRQ: XEN_DOMCTL_bind_pt_irq (Level true) or
	// unbind_pt_irq (Level false). Type (PT_IRQ_TYPE_*), Data = machine
	// IRQ (PIRQ); PCI: Link = bus, Dev, Pin = INTx; ISA: IRQ; MSI:
	// First = guest vector, Nr = gflags, Addr = gtable.
	EventBindPtIRQ
	// EventMemoryMapping: XEN_DOMCTL_memory_mapping. First = gfn, Addr =
	// mfn, Nr, Level = add.
	EventMemoryMapping
	// EventIOPortMapping: XEN_DOMCTL_ioport_mapping. First = guest port,
	// Addr = machine port, Nr, Level = add.
	EventIOPortMapping
	// EventPermission: XEN_DOMCTL_{irq,iomem,ioport}_permission. Type =
	// the domctl, First, Nr, Level = allow.
	EventPermission
	// EventPopulatePhysmap: one extent of XENMEM_populate_physmap. First
	// = gfn, Nr = pages.
	EventPopulatePhysmap
	// EventDecreaseReservation: one extent of
	// XENMEM_decrease_reservation. First = gfn, Nr = pages.
	EventDecreaseReservation
	// EventAddToPhysmap: XENMEM_add_to_physmap (gmfn, gmfn_range). First
	// = source gfn, Addr = destination gfn, Nr.
	EventAddToPhysmap
)

var kindNames = [...]string{
	EventPCIIntx: "pci-intx", EventPCILinkRoute: "pci-link-route", EventISAIRQ: "isa-irq",
	EventMSI: "msi", EventShutdown: "shutdown", EventTrackDirtyVRAM: "track-dirty-vram",
	EventModifiedMemory: "modified-memory", EventSetMemType: "set-mem-type",
	EventInjectEvent: "inject-event", EventMapMemType: "map-mem-type",
	EventPinCacheAttr: "pin-cacheattr", EventRelocateMemory: "relocate-memory",
	EventGuestNotify: "guest-notify", EventViolation: "violation", EventIOReqServer: "ioreq-server",
	EventMapPIRQ: "map-pirq", EventUnmapPIRQ: "unmap-pirq", EventBindPtIRQ: "bind-pt-irq",
	EventMemoryMapping: "memory-mapping", EventIOPortMapping: "ioport-mapping", EventPermission: "permission",
	EventPopulatePhysmap: "populate-physmap", EventDecreaseReservation: "decrease-reservation",
	EventAddToPhysmap: "add-to-physmap",
}

// String implements fmt.Stringer.
func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "event(" + strconv.Itoa(int(k)) + ")"
}

// Event is one recorded side effect. Which fields are meaningful depends on
// Kind (see the EventKind constants).
type Event struct {
	Seq    uint64 // 1, 2, ... in the order the hypervisor saw them
	Kind   EventKind
	Dom    hyp.DomID
	Server uint16
	Dev    uint8
	Pin    uint8
	Link   uint8
	IRQ    uint8
	Level  bool
	VCPU   uint32
	Type   uint32
	Addr   uint64
	Data   uint64
	First  uint64
	Nr     uint64
	Detail string
}

// String implements fmt.Stringer (for test failure messages).
func (e Event) String() string {
	return fmt.Sprintf("#%d %v %v srv=%d dev=%d pin=%d link=%d irq=%d level=%v vcpu=%d type=%d addr=%#x data=%#x first=%#x nr=%d %s",
		e.Seq, e.Dom, e.Kind, e.Server, e.Dev, e.Pin, e.Link, e.IRQ, e.Level, e.VCPU, e.Type, e.Addr, e.Data, e.First, e.Nr, e.Detail)
}

// ErrTimeout is returned (wrapped) by waits that ran out of time.
var ErrTimeout = errors.New("xensim: timed out")

// eventLog is a fixed-capacity ring of events. Recording allocates
// nothing (but the first event of a domain, which creates its counters),
// so DM-op fast paths stay allocation-free under the simulator.
//
// The ring keeps the latest events only: a long run wraps it, and a check
// that counts events from the start by walking it would count only the
// retained ones. Beside the ring the log therefore keeps what such checks
// need, for the whole run: per domain, the number of events of each kind
// (ioreq-server events also per detail) and the latest event of each kind;
// the protocol violations (up to maxViolations); and the tallies of
// NewTally.
type eventLog struct {
	mu         sync.Mutex
	ring       []Event
	next       uint64 // Seq of the next event
	waiters    map[chan struct{}]struct{}
	closed     bool
	doms       map[hyp.DomID]*domEvents
	violations []Event // the first maxViolations
	nviolation uint64
	tallies    []*Tally
}

// maxViolations bounds the violations kept beside the ring.
const maxViolations = 1024

// domEvents are one domain's cumulative event records.
type domEvents struct {
	count  [len(kindNames)]uint64
	server [len(serverDetails)]uint64 // EventIOReqServer by Detail
	last   [len(kindNames)]Event
}

// serverDetails are the Details of EventIOReqServer.
var serverDetails = [...]string{"create", "enable", "disable", "destroy"}

func (l *eventLog) init(capacity int) {
	l.ring = make([]Event, capacity)
	l.next = 1
	l.waiters = make(map[chan struct{}]struct{})
	l.doms = make(map[hyp.DomID]*domEvents)
}

func (l *eventLog) record(e *Event) {
	l.mu.Lock()
	e.Seq = l.next
	l.ring[l.next%uint64(len(l.ring))] = *e
	l.next++
	if int(e.Kind) < len(kindNames) {
		d := l.doms[e.Dom]
		if d == nil {
			d = new(domEvents)
			l.doms[e.Dom] = d
		}
		d.count[e.Kind]++
		d.last[e.Kind] = *e
		if e.Kind == EventIOReqServer {
			for i, s := range serverDetails {
				if e.Detail == s {
					d.server[i]++
				}
			}
		}
	}
	if e.Kind == EventViolation {
		l.nviolation++
		if len(l.violations) < maxViolations {
			l.violations = append(l.violations, *e)
		}
	}
	for _, t := range l.tallies {
		if t.match(*e) {
			t.n.Add(1)
		}
	}
	for w := range l.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	l.mu.Unlock()
}

func (l *eventLog) close() {
	l.mu.Lock()
	l.closed = true
	for w := range l.waiters {
		select {
		case w <- struct{}{}:
		default:
		}
	}
	l.mu.Unlock()
}

// since returns the retained events with Seq > after, oldest first.
func (l *eventLog) since(after uint64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sinceLocked(after)
}

func (l *eventLog) sinceLocked(after uint64) []Event {
	first := uint64(1)
	if n := uint64(len(l.ring)); l.next > n+1 {
		first = l.next - n
	}
	if after+1 > first {
		first = after + 1
	}
	var out []Event
	for seq := first; seq < l.next; seq++ {
		out = append(out, l.ring[seq%uint64(len(l.ring))])
	}
	return out
}

func (s *Sim) record(e Event) { s.events.record(&e) }

// Events returns the retained recorded events, oldest first: the latest
// EventCapacity of them. A check over the whole run uses Count, LastEvent,
// Violations or a Tally instead; a walk can tell that events were dropped
// when the first one's Seq is not 1.
func (s *Sim) Events() []Event { return s.events.since(0) }

// EventsSince returns the retained events with Seq > after, oldest first.
func (s *Sim) EventsSince(after uint64) []Event { return s.events.since(after) }

// LastSeq returns the Seq of the latest recorded event (0 if none), to
// pass to EventsSince or WaitEvent as a starting mark.
func (s *Sim) LastSeq() uint64 {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return s.events.next - 1
}

// WaitEvent waits up to timeout for the first event with Seq > after for
// which match returns true (nil matches any event) and returns it. It
// returns an error wrapping ErrTimeout when none arrives in time.
func (s *Sim) WaitEvent(after uint64, timeout time.Duration, match func(Event) bool) (Event, error) {
	l := &s.events
	w := make(chan struct{}, 1)
	l.mu.Lock()
	l.waiters[w] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.waiters, w)
		l.mu.Unlock()
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		l.mu.Lock()
		evs := l.sinceLocked(after)
		closed := l.closed
		l.mu.Unlock()
		for _, e := range evs {
			if match == nil || match(e) {
				return e, nil
			}
			after = e.Seq
		}
		if closed {
			return Event{}, fmt.Errorf("xensim: wait for event: %w", hyp.ErrClosed)
		}
		select {
		case <-w:
		case <-t.C:
			return Event{}, fmt.Errorf("xensim: no matching event after seq %d within %v: %w", after, timeout, ErrTimeout)
		}
	}
}

// Violations returns the protocol violations recorded since the Sim
// started, oldest first, however many events the ring dropped since: the
// first 1024 of them (ViolationCount tells whether there were more).
func (s *Sim) Violations() []Event {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return append([]Event(nil), s.events.violations...)
}

// ViolationCount returns the number of protocol violations recorded since
// the Sim started.
func (s *Sim) ViolationCount() uint64 {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	return s.events.nviolation
}

// Count returns the number of events of kind recorded for dom since the
// Sim started, however many the event ring dropped since. For
// EventIOReqServer, detail selects "create", "enable", "disable" or
// "destroy"; for every kind, detail "" counts all.
func (s *Sim) Count(dom hyp.DomID, kind EventKind, detail string) uint64 {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	d := s.events.doms[dom]
	if d == nil || int(kind) >= len(kindNames) {
		return 0
	}
	if detail == "" {
		return d.count[kind]
	}
	if kind == EventIOReqServer {
		for i, sd := range serverDetails {
			if detail == sd {
				return d.server[i]
			}
		}
	}
	return 0
}

// LastEvent returns the latest event of kind recorded for dom since the
// Sim started, and false if there was none.
func (s *Sim) LastEvent(dom hyp.DomID, kind EventKind) (Event, bool) {
	s.events.mu.Lock()
	defer s.events.mu.Unlock()
	d := s.events.doms[dom]
	if d == nil || int(kind) >= len(kindNames) || d.count[kind] == 0 {
		return Event{}, false
	}
	return d.last[kind], true
}

// Tally counts the events recorded from its creation on that its match
// function accepts, whatever the ring drops. Make one with NewTally.
type Tally struct {
	s     *Sim
	match func(Event) bool
	n     atomic.Uint64
}

// NewTally starts counting the events for which match returns true. match
// runs under the event log's lock for every later event: it must be quick
// and must not call the Sim.
func (s *Sim) NewTally(match func(Event) bool) *Tally {
	t := &Tally{s: s, match: match}
	s.events.mu.Lock()
	s.events.tallies = append(s.events.tallies, t)
	s.events.mu.Unlock()
	return t
}

// N returns the number of matching events so far.
func (t *Tally) N() uint64 { return t.n.Load() }

// Stop stops counting; N keeps its value.
func (t *Tally) Stop() {
	l := &t.s.events
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, o := range l.tallies {
		if o == t {
			l.tallies = append(l.tallies[:i:i], l.tallies[i+1:]...)
			return
		}
	}
}

func (s *Sim) violation(d hyp.DomID, vcpu uint32, format string, args ...any) {
	s.record(Event{Kind: EventViolation, Dom: d, VCPU: vcpu, Detail: fmt.Sprintf(format, args...)})
}
