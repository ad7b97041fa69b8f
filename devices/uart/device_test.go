package uart

import (
	"testing"
	"time"

	"godm/devices"
)

type opKind int

const (
	wr    opKind = iota // write val to off
	rd                  // read off, want val
	irqIs               // IRQ line level must be val != 0
	feed                // host sends byte val; want it taken
	tick                // advance the clock by val character times
	brk                 // host sends a break
)

type step struct {
	op  opKind
	off uint64
	val uint8
}

func runSteps(t *testing.T, r *rig, steps []step) {
	t.Helper()
	for i, s := range steps {
		switch s.op {
		case wr:
			r.out(s.off, s.val)
		case rd:
			if got := r.in(s.off); got != s.val {
				t.Errorf("step %d: in(%d) = %#02x, want %#02x", i, s.off, got, s.val)
			}
		case irqIs:
			if got, want := r.line.Level(), s.val != 0; got != want {
				t.Errorf("step %d: IRQ level = %v, want %v", i, got, want)
			}
		case feed:
			if got := r.be.feed([]byte{s.val}); got != 1 {
				t.Errorf("step %d: backend byte %#02x not taken (took %d)", i, s.val, got)
			}
		case tick:
			r.clock.Advance(time.Duration(s.val) * r.u.charTime)
		case brk:
			r.u.SendBreak()
		}
	}
}

func TestUART_Scripts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"reset values", []step{
			{rd, regIER, 0}, {rd, regIIR, 0x01}, {rd, regLCR, 0}, {rd, regMCR, 0x08},
			{rd, regLSR, 0x60}, {rd, regMSR, 0xb0}, {rd, regSCR, 0}, {irqIs, 0, 0},
		}},
		{"scratch", []step{{wr, regSCR, 0x5a}, {rd, regSCR, 0x5a}, {wr, regSCR, 0xa5}, {rd, regSCR, 0xa5}}},
		{"divisor latch", []step{
			{wr, regLCR, 0x80}, {rd, regRBR, 12}, {rd, regIER, 0},
			{wr, regRBR, 0x01}, {wr, regIER, 0x02}, {rd, regRBR, 0x01}, {rd, regIER, 0x02},
			{wr, regLCR, 0x03}, {rd, regIER, 0}, {rd, regLCR, 0x03},
		}},
		{"IER keeps low nibble", []step{{wr, regIER, 0xf0}, {rd, regIER, 0}, {wr, regIER, 0xff}, {rd, regIER, 0x0f}}},
		{"MCR keeps 5 bits", []step{{wr, regMCR, 0xff}, {rd, regMCR, 0x1f}}},
		{"FIFO enable shows in IIR", []step{
			{wr, regIIR, 0x01}, {rd, regIIR, 0xc1}, {wr, regIIR, 0x00}, {rd, regIIR, 0x01},
		}},
		{"THRE interrupt and IIR-read clear", []step{
			{wr, regIER, ierTHRI}, {irqIs, 0, 1}, {rd, regIIR, 0x02}, {irqIs, 0, 0},
			{rd, regIIR, 0x01},
			{wr, regRBR, 'A'}, {irqIs, 0, 1}, {rd, regLSR, 0x60}, {rd, regIIR, 0x02}, {irqIs, 0, 0},
			// Re-enabling THRI re-latches it (QEMU/Windows behaviour).
			{wr, regIER, 0}, {wr, regIER, ierTHRI}, {irqIs, 0, 1},
		}},
		{"receive without FIFO", []step{
			{wr, regIER, ierRDI}, {feed, 0, 'x'}, {irqIs, 0, 1}, {rd, regIIR, 0x04}, {rd, regLSR, 0x61},
			{rd, regRBR, 'x'}, {irqIs, 0, 0}, {rd, regLSR, 0x60}, {rd, regIIR, 0x01},
		}},
		{"trigger level 4", []step{
			{wr, regIIR, 0x41}, {wr, regIER, ierRDI},
			{feed, 0, 1}, {feed, 0, 2}, {feed, 0, 3}, {irqIs, 0, 0}, {rd, regIIR, 0xc1},
			{feed, 0, 4}, {irqIs, 0, 1}, {rd, regIIR, 0xc4},
			{rd, regRBR, 1}, {irqIs, 0, 0}, {rd, regRBR, 2}, {rd, regRBR, 3}, {rd, regRBR, 4},
			{rd, regLSR, 0x60},
		}},
		{"character timeout", []step{
			{wr, regIIR, 0xc1}, {wr, regIER, ierRDI}, {feed, 0, 'a'}, {irqIs, 0, 0},
			{tick, 0, 3}, {irqIs, 0, 0}, {tick, 0, 1}, {irqIs, 0, 1}, {rd, regIIR, 0xcc},
			{rd, regRBR, 'a'}, {irqIs, 0, 0}, {rd, regIIR, 0xc1},
			// An empty FIFO never times out.
			{tick, 0, 8}, {irqIs, 0, 0},
		}},
		{"timeout masked by IER.RDI", []step{
			{wr, regIIR, 0xc1}, {feed, 0, 'a'}, {tick, 0, 5}, {irqIs, 0, 0}, {rd, regIIR, 0xc1},
			{wr, regIER, ierRDI}, {irqIs, 0, 1}, {rd, regIIR, 0xcc},
		}},
		{"overrun without FIFO", []step{
			{wr, regIER, ierRLSI | ierRDI}, {feed, 0, 'a'},
			{rd, regIIR, 0x04},
		}},
		{"break", []step{
			{wr, regIER, ierRLSI}, {brk, 0, 0}, {irqIs, 0, 1}, {rd, regIIR, 0x06},
			{rd, regLSR, 0x71}, {irqIs, 0, 0}, {rd, regLSR, 0x61}, {rd, regRBR, 0}, {rd, regLSR, 0x60},
		}},
		{"loopback", []step{
			{wr, regMCR, mcrLoop}, {rd, regMSR, 0x00},
			{wr, regMCR, mcrLoop | mcrDTR}, {rd, regMSR, 0x20},
			{wr, regMCR, mcrLoop | mcrRTS}, {rd, regMSR, 0x10},
			{wr, regMCR, mcrLoop | mcrOUT1}, {rd, regMSR, 0x40},
			{wr, regMCR, mcrLoop | mcrOUT2}, {rd, regMSR, 0x80},
			{wr, regIER, ierRDI}, {wr, regRBR, 'L'}, {irqIs, 0, 1}, {rd, regLSR, 0x61},
			{rd, regRBR, 'L'}, {irqIs, 0, 0},
		}},
		{"priority: line status over data over THRE", []step{
			{wr, regIER, ierRDI | ierTHRI | ierRLSI | ierMSI}, {rd, regIIR, 0x02},
			{feed, 0, 'a'}, {rd, regIIR, 0x04},
			{brk, 0, 0}, {rd, regIIR, 0x06},
			{rd, regLSR, 0x71}, {rd, regIIR, 0x04},
			{rd, regRBR, 0}, {rd, regIIR, 0x01}, // THRE was cleared by the first IIR read
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runSteps(t, newRig(t), tc.steps)
		})
	}
}

func TestUART_OverrunNoFIFO(t *testing.T) {
	r := newRig(t)
	r.out(regIER, ierRLSI|ierRDI)
	r.be.feed([]byte{'a'})
	// Without FIFO the UART takes one byte; the host backend waits.
	if got := r.be.feed([]byte{'b'}); got != 0 {
		t.Errorf("second byte taken = %d, want 0 (back-pressure)", got)
	}
	// A loopback byte bypasses back-pressure and overruns.
	r.out(regMCR, mcrLoop)
	r.out(regRBR, 'c')
	if got, want := r.in(regIIR), uint8(0x06); got != want {
		t.Errorf("IIR = %#x, want %#x (line status)", got, want)
	}
	if got, want := r.in(regLSR), uint8(0x63); got != want {
		t.Errorf("LSR = %#x, want %#x", got, want)
	}
	if got, want := r.in(regRBR), uint8('c'); got != want {
		t.Errorf("RBR = %q, want %q (last byte wins without FIFO)", got, want)
	}
	if got, want := r.u.Stats().Overruns, uint64(1); got != want {
		t.Errorf("Overruns = %d, want %d", got, want)
	}
}

func TestUART_FIFOFullOverrun(t *testing.T) {
	r := newRig(t)
	r.out(regIIR, 0x01)
	r.out(regMCR, mcrLoop)
	for i := 0; i < 17; i++ {
		r.out(regRBR, uint8('a'+i))
	}
	if got, want := r.in(regLSR), uint8(0x63); got != want {
		t.Errorf("LSR = %#x, want %#x", got, want)
	}
	for i := 0; i < 16; i++ {
		if got, want := r.in(regRBR), uint8('a'+i); got != want {
			t.Errorf("byte %d = %q, want %q", i, got, want)
		}
	}
	if got, want := r.in(regLSR), uint8(0x60); got != want {
		t.Errorf("LSR after draining = %#x, want %#x", got, want)
	}
}

func TestUART_ReceiveBackPressure(t *testing.T) {
	r := newRig(t)
	r.out(regIIR, 0x81) // FIFO, trigger level 8
	in := []byte("0123456789abcdefXYZ")
	if got, want := r.be.feed(in), 8; got != want {
		t.Fatalf("first offer took %d, want %d (up to trigger level)", got, want)
	}
	if got := r.be.feed(in[8:]); got != 0 {
		t.Fatalf("offer at trigger level took %d, want 0", got)
	}
	readys := r.be.readys
	if got := r.in(regRBR); got != '0' {
		t.Fatalf("RBR = %q, want '0'", got)
	}
	if r.be.readys == readys {
		t.Error("reading RBR did not signal Ready")
	}
	if got, want := r.be.feed(in[8:]), 1; got != want {
		t.Errorf("offer after one read took %d, want %d", got, want)
	}
	r.out(regMCR, mcrLoop)
	if got := r.be.feed(in[9:]); got != 0 {
		t.Errorf("loopback took %d host bytes, want 0", got)
	}
}

func TestUART_Transmit(t *testing.T) {
	r := newRig(t)
	for _, c := range []byte("hi\n") {
		r.out(regRBR, c)
	}
	r.out(regIIR, 0x07)
	r.out(regRBR, '!')
	if got, want := r.be.output(), "hi\n!"; got != want {
		t.Errorf("backend got %q, want %q", got, want)
	}
	if got, want := r.u.Stats().Transmitted, uint64(4); got != want {
		t.Errorf("Transmitted = %d, want %d", got, want)
	}
	r.be.limit = 4
	r.out(regRBR, 'x')
	if got, want := r.u.Stats().TxDropped, uint64(1); got != want {
		t.Errorf("TxDropped = %d, want %d", got, want)
	}
}

func TestUART_ModemStatus(t *testing.T) {
	r := newRig(t)
	r.out(regIER, ierMSI)
	if r.line.Level() {
		t.Fatal("IRQ high before any modem change")
	}
	for i, tc := range []struct {
		lines   ModemLines
		wantIIR uint8
		wantMSR uint8
	}{
		// CTS, DSR and DCD drop: three deltas.
		{ModemLines{}, 0x00, 0x0b},
		// RI rises: no delta (TERI is for the trailing edge only).
		{ModemLines{RI: true}, 0x01, 0x40},
		// RI falls: TERI.
		{ModemLines{}, 0x00, 0x04},
		{ModemLines{CTS: true, DSR: true, DCD: true}, 0x00, 0xbb},
	} {
		r.u.SetModemLines(tc.lines)
		if got := r.in(regIIR); got != tc.wantIIR {
			t.Errorf("%d: IIR = %#x, want %#x", i, got, tc.wantIIR)
		}
		if got, want := r.line.Level(), tc.wantIIR == 0; got != want {
			t.Errorf("%d: IRQ = %v, want %v", i, got, want)
		}
		if got := r.in(regMSR); got != tc.wantMSR {
			t.Errorf("%d: MSR = %#x, want %#x", i, got, tc.wantMSR)
		}
		if r.line.Level() {
			t.Errorf("%d: IRQ still high after MSR read", i)
		}
		if got, want := r.in(regMSR), tc.wantMSR&0xf0; got != want {
			t.Errorf("%d: MSR reread = %#x, want %#x (deltas cleared)", i, got, want)
		}
	}
}

func TestUART_CharTime(t *testing.T) {
	r := newRig(t)
	if got, want := r.u.charTime, 10*(time.Second/9600); got != want {
		t.Errorf("charTime after reset = %v, want %v (8N1 at 9600)", got, want)
	}
	for _, tc := range []struct {
		name    string
		divisor uint16
		lcr     uint8
		want    time.Duration
	}{
		{"9600 8N1", 12, 0x03, 10 * (time.Second / 9600)},
		{"115200 8N1", 1, 0x03, 10 * (time.Second / 115200)},
		{"1200 7E2", 96, 0x1e, 11 * (time.Second / 1200)},
		// The LCR=DLAB write recomputes with 5 data bits at the old
		// divisor; the zero divisor then keeps that value (QEMU).
		{"divisor 0 keeps previous", 0, 0x03, 7 * (time.Second / 1200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.out(regLCR, lcrDLAB)
			r.out(regRBR, uint8(tc.divisor))
			r.out(regIER, uint8(tc.divisor>>8))
			r.out(regLCR, tc.lcr)
			if got := r.u.charTime; got != tc.want {
				t.Errorf("charTime = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUART_WideAccess(t *testing.T) {
	r := newRig(t)
	r.out(regSCR, 0x77)
	// A 2-byte read at LCR covers LCR and MCR.
	if got, want := r.u.Read(devices.Access{Offset: regLCR, Size: 2}), uint64(0x0800); got != want {
		t.Errorf("inw(LCR) = %#x, want %#x", got, want)
	}
	r.u.Write(devices.Access{Offset: regLCR, Size: 2}, 0x0183)
	if got, want := r.in(regMCR), uint8(0x01); got != want {
		t.Errorf("MCR = %#x, want %#x", got, want)
	}
	if got, want := r.u.Read(devices.Access{Offset: regRBR, Size: 2}), uint64(0x000c); got != want {
		t.Errorf("inw(DLL) = %#x, want %#x", got, want)
	}
	if got, want := r.u.Read(devices.Access{Offset: regSCR, Size: 2}), uint64(0xff77); got != want {
		t.Errorf("inw(SCR) past the block = %#x, want %#x", got, want)
	}
}

func TestUART_Reset(t *testing.T) {
	r := newRig(t)
	r.out(regIIR, 0xc7)
	r.out(regIER, 0x0f)
	r.out(regLCR, 0x9b)
	r.out(regSCR, 1)
	r.be.feed([]byte{1, 2})
	r.u.Reset()
	if r.line.Level() {
		t.Error("IRQ high after reset")
	}
	runSteps(t, r, []step{
		{rd, regIER, 0}, {rd, regIIR, 0x01}, {rd, regLCR, 0}, {rd, regMCR, 0x08},
		{rd, regLSR, 0x60}, {rd, regMSR, 0xb0}, {rd, regSCR, 0},
	})
}

func TestUART_CloseDetaches(t *testing.T) {
	r := newRig(t)
	r.u.Close()
	if got := r.be.feed([]byte{1}); got != 0 {
		t.Errorf("closed UART took %d bytes", got)
	}
}

func TestCOM(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want ISAPlacement
		ok   bool
	}{
		{1, ISAPlacement{0x3f8, 4}, true},
		{2, ISAPlacement{0x2f8, 3}, true},
		{3, ISAPlacement{0x3e8, 4}, true},
		{4, ISAPlacement{0x2e8, 3}, true},
		{0, ISAPlacement{}, false},
		{5, ISAPlacement{}, false},
	} {
		got, err := COM(tc.n)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("COM(%d) = %+v, %v; want %+v, ok=%v", tc.n, got, err, tc.want, tc.ok)
		}
	}
}

func TestRegisterCOM(t *testing.T) {
	pio := devices.NewSpace("pio")
	r := newRig(t)
	p, err := RegisterCOM(pio, 1, r.u)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p, (ISAPlacement{0x3f8, 4}); got != want {
		t.Errorf("placement = %+v, want %+v", got, want)
	}
	if got, want := pio.Read(0x3fd, 1, 0), uint64(0x60); got != want {
		t.Errorf("LSR through the bus = %#x, want %#x", got, want)
	}
	if _, err := RegisterCOM(pio, 1, r.u); err == nil {
		t.Error("registering COM1 twice succeeded")
	}
}

func TestUART_ZeroAlloc(t *testing.T) {
	r := newRig(t)
	r.out(regIIR, 0x01)
	r.out(regIER, 0x0f)
	thr := devices.Access{Offset: regRBR, Size: 1}
	lsr := devices.Access{Offset: regLSR, Size: 1}
	iir := devices.Access{Offset: regIIR, Size: 1}
	rx := []byte{'z'}
	allocs := testing.AllocsPerRun(1000, func() {
		r.u.Write(thr, 'a')
		r.u.Read(lsr)
		r.u.Read(iir)
		r.be.feed(rx)
		r.u.Read(thr)
	})
	if allocs != 0 {
		t.Errorf("guest access allocs = %v, want 0", allocs)
	}
}
