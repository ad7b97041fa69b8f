package simtarget_test

import (
	"context"
	"slices"
	"testing"

	"godm/devices/chardev"
	"godm/hyp/xensim"
	"godm/internal/machine"
	"godm/internal/qtest"
	"godm/internal/qtest/simtarget"
	"godm/internal/testfake"
)

// TestTarget drives the machine's COM1 and i8042 through a vCPU and checks
// the values and the edges of the watched IRQ (4) only.
func TestTarget(t *testing.T) {
	xen := testfake.NewXen(t, xensim.Config{}, testfake.RAM(2, 16<<20))
	sim, dom := xen.Sim, xen.Dom
	be := chardev.NewNull()
	m, err := machine.New(sim.Kernel(0), machine.Spec{Dom: dom.ID(), VCPUs: 2, MemBytes: 16 << 20,
		Serial: []chardev.Backend{be}, DeathPoll: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); be.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	tgt := simtarget.New(sim, dom, dom.VCPU(0), 4)
	if got := tgt.Dom(); got != dom.ID() {
		t.Errorf("Dom() = %v, want %v", got, dom.ID())
	}
	raise, lower := qtest.IRQEvent{Line: 4, High: true}, qtest.IRQEvent{Line: 4}
	for i, tc := range []struct {
		step  qtest.Step
		value uint64
		irqs  []qtest.IRQEvent
		irq1  bool // IRQ 1's level after the step
	}{
		{qtest.In(0x3fd), 0x60, nil, false},                         // LSR: THRE, TEMT
		{qtest.Out(0x3f9, 0x02), 0, []qtest.IRQEvent{raise}, false}, // THRE interrupt enabled
		{qtest.Out(0x3f9, 0x02), 0, nil, false},                     // no change, no edge
		{qtest.In(0x3fa), 0x02, []qtest.IRQEvent{lower}, false},     // reading IIR acknowledges THRE
		{qtest.Out(0x64, 0x60), 0, nil, false},                      // i8042 command byte: keyboard
		{qtest.Out(0x60, 0x01), 0, nil, false},                      // interrupt on (IRQ 1, not watched)
		{qtest.Out(0x64, 0xaa), 0, nil, true},                       // self-test raises IRQ 1 only
		{qtest.In(0x60), 0x55, nil, false},
		{qtest.Step{Port: 0x3f8, Size: 4}, 0x00010200, nil, false}, // wide: RBR, IER, IIR (0x01: none pending), LCR
	} {
		r, err := tgt.Run(tc.step)
		if err != nil {
			t.Fatalf("step %d %s: %v", i, tc.step, err)
		}
		if tc.step.Write {
			tc.value = 0
		}
		if r.Value != tc.value || !slices.Equal(r.IRQs, tc.irqs) {
			t.Errorf("step %d %s = %#x %v, want %#x %v", i, tc.step, r.Value, r.IRQs, tc.value, tc.irqs)
		}
		if got := dom.ISAIRQLevel(1); got != tc.irq1 {
			t.Errorf("step %d %s: IRQ 1 level %v, want %v (unwatched lines are left out, not changed)", i, tc.step, got, tc.irq1)
		}
	}

	// Round robin: the address goes out on vCPU 0 and the data cycle
	// comes from vCPU 1 (Xen's 0xcf8 latch is per domain).
	tgt.RoundRobin(dom.VCPU(0), dom.VCPU(1))
	for _, st := range []qtest.Step{
		{Write: true, Port: 0xcf8, Size: 4, Value: 0x80000000},
		{Port: 0xcfc, Size: 4},
	} {
		r, err := tgt.Run(st)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Write && r.Value != 0x12378086 {
			t.Errorf("00:00.0 IDs through two vCPUs = %#x, want 0x12378086", r.Value)
		}
	}
}
