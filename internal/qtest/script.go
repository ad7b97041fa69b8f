package qtest

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"godm/devices"
	"godm/irq"
)

// Step is one port access of a differential script.
type Step struct {
	// Write selects out (true) or in (false).
	Write bool
	// Port is the I/O port.
	Port uint16
	// Size is the access width: 1, 2 or 4 (0 means 1).
	Size uint8
	// Value is the value written (ignored for reads).
	Value uint64
	// Why, when set, documents the step; Diff prints it on a mismatch.
	Why string
	// Reset makes the step a machine reset instead of a port access
	// (the other fields but Why are unused): QEMU's system reset on the
	// reference, the machine's board reset on godm.
	Reset bool
	// Ignore holds the bits of the read value that may differ between
	// the reference and godm (a documented deviation: Why says why). Diff
	// compares the value with these bits cleared; interrupt edges are
	// still compared in full.
	Ignore uint64
}

// Out returns a write step.
func Out(port uint16, v uint64) Step { return Step{Write: true, Port: port, Size: 1, Value: v} }

// In returns a read step.
func In(port uint16) Step { return Step{Port: port, Size: 1} }

// String formats the step as a qtest command.
func (s Step) String() string {
	if s.Reset {
		return "system_reset"
	}
	size := s.Size
	if size == 0 {
		size = 1
	}
	op, _ := opName(map[bool]string{true: "out", false: "in"}[s.Write], size)
	if s.Write {
		return fmt.Sprintf("%s %#x %#x", op, s.Port, s.Value)
	}
	return fmt.Sprintf("%s %#x", op, s.Port)
}

// Result is what one step produced on a target.
type Result struct {
	// Value is the value read (0 for writes).
	Value uint64
	// IRQs are the interrupt edges the step caused, on watched lines.
	IRQs []IRQEvent
}

// Target runs steps: QEMU (QEMUTarget), a godm space (SpaceTarget) or a
// vCPU of a simulated Xen domain served by a whole godm machine
// (internal/qtest/simtarget).
type Target interface {
	Run(s Step) (Result, error)
}

// QEMUTarget runs steps on a QEMU client, keeping only events of the
// watched lines.
type QEMUTarget struct {
	C     *Client
	Watch []int
}

// Run implements Target.
func (q *QEMUTarget) Run(s Step) (Result, error) {
	size := s.Size
	if size == 0 {
		size = 1
	}
	var r Result
	var ev []IRQEvent
	var err error
	if s.Reset {
		ev, err = q.resetQEMU()
	} else if s.Write {
		ev, err = q.C.Out(s.Port, size, s.Value)
	} else {
		r.Value, ev, err = q.C.In(s.Port, size)
	}
	for _, e := range ev {
		if slices.Contains(q.Watch, e.Line) {
			r.IRQs = append(r.IRQs, e)
		}
	}
	return r, err
}

// resetQEMU resets QEMU's machine the way a guest does: SYS_RST|RST_CPU
// in PIIX3's reset control register 0xcf9 requests the same
// qemu_system_reset as QMP's system_reset (hw/isa/piix.c rcr_write:
// qemu_system_reset_request). QEMU carries the request out in its main
// loop after the command that raised it, before reading the next one, so
// a read of an unassigned port follows to collect the reset's interrupt
// edges and to be sure it happened.
func (q *QEMUTarget) resetQEMU() ([]IRQEvent, error) {
	ev, err := q.C.Out(0xcf9, 1, 0x06)
	if err != nil {
		return ev, err
	}
	_, more, err := q.C.In(0x80, 1)
	return append(ev, more...), err
}

// SpaceTarget runs steps on a godm port I/O space. Lines hands out the
// irq.Line for an input number; edges on it are recorded like QEMU's
// intercepted I/O APIC pins (changes only).
type SpaceTarget struct {
	Space *devices.Space

	mu     sync.Mutex
	levels map[int]bool
	events []IRQEvent
}

// NewSpaceTarget returns a target for space.
func NewSpaceTarget(space *devices.Space) *SpaceTarget {
	return &SpaceTarget{Space: space, levels: map[int]bool{}}
}

// Line returns the recorded interrupt input n.
func (t *SpaceTarget) Line(n int) irq.Line {
	return irq.LineFunc(func(high bool) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.levels[n] != high {
			t.levels[n] = high
			t.events = append(t.events, IRQEvent{Line: n, High: high})
		}
	})
}

// Run implements Target.
func (t *SpaceTarget) Run(s Step) (Result, error) {
	size := s.Size
	if size == 0 {
		size = 1
	}
	var r Result
	if s.Reset {
		return r, fmt.Errorf("qtest: a port space cannot reset")
	}
	if s.Write {
		t.Space.Write(uint64(s.Port), size, 0, s.Value)
	} else {
		r.Value = t.Space.Read(uint64(s.Port), size, 0)
	}
	t.mu.Lock()
	r.IRQs, t.events = t.events, nil
	t.mu.Unlock()
	return r, nil
}

// TB is the subset of testing.TB that Diff uses.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Diff runs script on want (the reference, QEMU) and got (godm) in lock
// step and reports every step whose read value or interrupt edges differ.
// It returns the number of mismatching steps.
func Diff(t TB, script []Step, want, got Target) int {
	t.Helper()
	bad := 0
	for i, s := range script {
		w, err := want.Run(s)
		if err != nil {
			t.Fatalf("step %d (%s): reference: %v", i, s, err)
		}
		g, err := got.Run(s)
		if err != nil {
			t.Fatalf("step %d (%s): godm: %v", i, s, err)
		}
		if w.Value&^s.Ignore != g.Value&^s.Ignore || !slices.Equal(w.IRQs, g.IRQs) {
			bad++
			why := ""
			if s.Why != "" {
				why = " (" + s.Why + ")"
			}
			t.Errorf("step %d %s%s: godm value %#x irqs [%s], QEMU value %#x irqs [%s]",
				i, s, why, g.Value, fmtEvents(g.IRQs), w.Value, fmtEvents(w.IRQs))
		}
	}
	return bad
}

func fmtEvents(ev []IRQEvent) string {
	var b strings.Builder
	for i, e := range ev {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.String())
	}
	return b.String()
}
