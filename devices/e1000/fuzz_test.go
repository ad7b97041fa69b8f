package e1000

import (
	"encoding/binary"
	"testing"
	"time"

	"godm/devices"
	"godm/internal/testfake"
	"godm/memory"
	"godm/netback"
	"godm/pci"
)

// fuzzMem is the guest memory of the fuzz targets: small, so most
// guest-chosen addresses are unmapped.
const fuzzMem = 64 << 10

type fuzzRig struct {
	d   *Device
	mem *memory.Flat
	be  portBE
	irq *testfake.Recorder
	clk *testfake.Clock
}

func newFuzzRig(t *testing.T) *fuzzRig {
	r := &fuzzRig{mem: memory.NewFlat(0, fuzzMem), irq: &testfake.Recorder{}, clk: &testfake.Clock{}}
	r.be = portBE{netback.NewPort(netback.PortConfig{Depth: 4})}
	t.Cleanup(func() { r.be.Close() })
	d, err := New(Config{MAC: testMAC, Memory: r.mem, Backend: r.be, Clock: r.clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	bus, err := pci.NewBus(pci.BusConfig{Spaces: devices.NewBus(), INTx: testfake.AllPins{Line: r.irq}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Add(d.Function(), 4, 0); err != nil {
		t.Fatal(err)
	}
	d.Function().Write(devices.Access{Offset: 4, Size: 2}, 7)
	r.d = d
	return r
}

// check asserts the invariants a hostile guest must not break.
func (r *fuzzRig) check(t *testing.T) {
	d := r.d
	d.mu.Lock()
	level := d.st.mitLevel
	pending := d.st.r[ix(regIMS)]&d.st.r[ix(regICR)] != 0
	line := r.irq.Level()
	size := d.tx.size
	bs := d.st.rxBufSize
	d.mu.Unlock()
	if line != level {
		t.Fatalf("INTx %v, device's level %v", line, level)
	}
	if level && !pending {
		t.Fatal("line up without a pending cause")
	}
	if size < 0 || size > txData {
		t.Fatalf("staged %d bytes", size)
	}
	switch bs {
	case 0, 256, 512, 1024, 2048, 4096, 8192, 16384:
	default:
		t.Fatalf("receive buffer size %d", bs)
	}
	for f := r.be.TxQueue().Pop(); f != nil; f = r.be.TxQueue().Pop() {
		if n := len(f.Bytes()); n < 14 || n > netback.MaxFrame {
			t.Fatalf("sent a %d-byte frame", n)
		}
		f.Release()
	}
}

// fuzzRegs are the registers a fuzz program names by a byte.
var fuzzRegs = []uint32{regCTRL, regSTATUS, regEECD, regEERD, regMDIC, regVET, regICR, regITR, regICS,
	regIMS, regIMC, regRCTL, regTCTL, regRDBAL, regRDBAH, regRDLEN, regRDH, regRDT, regRDTR, regRADV,
	regTDBAL, regTDBAH, regTDLEN, regTDH, regTDT, regTADV, regRA, regRA + 4, regMTA, regVFTA, regGPRC,
	regTORH, regPBM}

// FuzzScript runs a byte string as a guest program: register reads and
// writes of every width (at the named registers or anywhere in the BAR),
// guest memory writes (rings, descriptors, buffers), frames arriving
// from the network, clock steps, link changes, resets, a snapshot round
// trip. Whatever it does, the device keeps its invariants and sends only
// frames a back-end takes.
func FuzzScript(f *testing.F) {
	w := func(reg byte, v uint32) []byte {
		b := []byte{1, reg, 2, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[3:], v)
		return b
	}
	ri := func(off uint32) byte {
		for i, r := range fuzzRegs {
			if r == off {
				return byte(i)
			}
		}
		panic("register")
	}
	// A transmit ring at 0x1000 with one legacy descriptor, a receive
	// ring at 0x2000, a frame.
	var p []byte
	p = append(p, w(ri(regTDBAL), 0x1000)...)
	p = append(p, w(ri(regTDLEN), 128)...)
	p = append(p, w(ri(regTCTL), tctlEN)...)
	p = append(p, 2, 0x00, 0x01, 16, 0, 0x30, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0x09, 0, 0, 0, 0)
	p = append(p, w(ri(regTDT), 1)...)
	p = append(p, w(ri(regRDBAL), 0x2000)...)
	p = append(p, w(ri(regRDLEN), 128)...)
	p = append(p, w(ri(regRDT), 5)...)
	p = append(p, w(ri(regRCTL), rctlEN|rctlUPE|rctlBAM)...)
	p = append(p, 2, 0x00, 0x02, 16, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	p = append(p, 3, 40, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 4)
	f.Add(p)
	f.Add([]byte{1, ri(regIMS), 2, 0xff, 0xff, 0, 0, 1, ri(regICS), 2, 0x80, 0, 0, 0, 5, 10, 0, ri(regICR), 2, 6, 1})
	f.Fuzz(func(t *testing.T, prog []byte) {
		r := newFuzzRig(t)
		m := mmio{r.d}
		for len(prog) > 0 {
			op := prog[0] % 8
			prog = prog[1:]
			switch op {
			case 0, 1: // read or write a named register: index, size, value
				if len(prog) < 6 {
					return
				}
				off := uint64(fuzzRegs[int(prog[0])%len(fuzzRegs)]) + uint64(prog[0]/64)
				size := []uint8{1, 2, 4, 8}[prog[1]%4]
				a := devices.Access{Offset: min(off, MMIOSize-uint64(size)), Size: size}
				if op == 0 {
					m.Read(a)
				} else {
					m.Write(a, uint64(binary.LittleEndian.Uint32(prog[2:])))
				}
				prog = prog[6:]
			case 2: // guest memory: 16-bit address, length, bytes
				if len(prog) < 3 {
					return
				}
				addr := uint64(binary.LittleEndian.Uint16(prog))
				n := min(int(prog[2]), len(prog)-3)
				r.mem.Write(memory.GPA(addr), prog[3 : 3+n][:min(n, int(fuzzMem-addr))])
				prog = prog[3+n:]
			case 3: // a frame from the network: length/8, then its first bytes
				if len(prog) < 1 {
					return
				}
				n := int(prog[0]) * 8
				fr := make([]byte, n)
				copy(fr, prog[1:])
				prog = prog[min(len(prog), 1+n):]
				r.d.mu.Lock()
				if n <= netback.MaxFrame {
					r.d.receiveFrameLocked(fr)
				}
				r.d.mu.Unlock()
			case 4: // drain the back-end, check
				r.check(t)
			case 5: // the clock: up to 255 × 64 µs
				if len(prog) < 1 {
					return
				}
				r.clk.Advance(64 * 1000 * time.Duration(prog[0]))
				r.d.mu.Lock()
				r.d.timersLocked()
				r.d.mu.Unlock()
				prog = prog[1:]
			case 6: // reset, snapshot round trip, or link
				if len(prog) < 1 {
					return
				}
				switch prog[0] % 4 {
				case 0:
					r.d.Reset()
				case 1:
					snap, err := r.d.Snapshot()
					if err != nil {
						t.Fatal(err)
					}
					if err := r.d.Restore(snap); err != nil {
						t.Fatalf("own snapshot refused: %v", err)
					}
				case 2:
					r.d.SetLink(false)
				case 3:
					r.d.SetLink(true)
				}
				prog = prog[1:]
			case 7: // an access anywhere in the BAR
				if len(prog) < 7 {
					return
				}
				off := uint64(binary.LittleEndian.Uint32(prog)) % MMIOSize
				size := []uint8{1, 2, 4, 8}[prog[4]%4]
				a := devices.Access{Offset: min(off, MMIOSize-uint64(size)), Size: size}
				m.Write(a, uint64(binary.LittleEndian.Uint16(prog[5:])))
				prog = prog[7:]
			}
		}
		r.check(t)
	})
}

// FuzzRings fills guest memory with the fuzzer's bytes and points both
// rings at it with the fuzzer's RCTL and ring registers: every
// descriptor a guest could write is decoded (context descriptors with any
// offsets, TSO with any header length and MSS), walks stay bounded,
// frames sent are well-formed.
func FuzzRings(f *testing.F) {
	seed := make([]byte, 4096)
	copy(seed, ctxDesc(14, 24, 33, 34, 50, 0, txdTSE|txdIP|txdTCP|1500, 54, 100))
	copy(seed[16:], txDesc(0x800, uint32(54+1500)|txdDEXT|txdDTYPD|txdTSE|txdEOP|txdRS, 3<<8))
	copy(seed[0x800:], tcpFrame(1500))
	f.Add(seed, uint32(rctlEN|rctlUPE), uint16(4), uint16(2), uint8(0))
	f.Add(seed, uint32(rctlEN|rctlBAM|0x30000|rctlSECRC), uint16(2), uint16(7), uint8(1))
	f.Add(make([]byte, 256), uint32(0xffffffff), uint16(0xffff), uint16(0xffff), uint8(3))
	f.Fuzz(func(t *testing.T, image []byte, rctl uint32, tdt, rdt uint16, mode uint8) {
		r := newFuzzRig(t)
		if len(image) > fuzzMem {
			image = image[:fuzzMem]
		}
		r.mem.Write(0, image)
		m := mmio{r.d}
		w := func(off uint32, v uint32) { m.Write(devices.Access{Offset: uint64(off), Size: 4}, uint64(v)) }
		if mode&1 != 0 {
			w(regCTRL, 0x00140240|ctrlVME)
		}
		if mode&2 != 0 { // PHY loopback
			w(regMDIC, mdicOpWrite|1<<mdicPHYShift|phyBMCR<<mdicRegShift|bmcrLoopback)
		}
		w(regIMS, 0xffffffff)
		w(regRDBAL, 0x1000)
		w(regRDLEN, 256)
		w(regRDT, uint32(rdt))
		w(regRCTL, rctl)
		w(regTDBAL, 0)
		w(regTDLEN, 128)
		w(regTCTL, tctlEN)
		w(regTDT, uint32(tdt))
		r.check(t)
		for i := range 4 {
			fr := image
			if len(fr) > netback.MaxFrame {
				fr = fr[:netback.MaxFrame]
			}
			r.d.mu.Lock()
			r.d.receiveFrameLocked(fr[:len(fr)>>i])
			r.d.mu.Unlock()
		}
		w(regTDH, 0)
		w(regTDT, uint32(tdt)+1)
		r.check(t)
	})
}
