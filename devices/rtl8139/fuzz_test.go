package rtl8139

import (
	"encoding/binary"
	"testing"

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
}

func newFuzzRig(t *testing.T) *fuzzRig {
	r := &fuzzRig{mem: memory.NewFlat(0, fuzzMem), irq: &testfake.Recorder{}}
	r.be = portBE{netback.NewPort(netback.PortConfig{Depth: 4})}
	t.Cleanup(func() { r.be.Close() })
	d, err := New(Config{MAC: testMAC, Memory: r.mem, Backend: r.be, Clock: &testfake.Clock{}})
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
	r.d = d
	return r
}

// check asserts the invariants a hostile guest must not break.
func (r *fuzzRig) check(t *testing.T) {
	d := r.d
	// The line is set under the device's lock: read both under it.
	d.mu.Lock()
	s := d.st
	level := s.isr&s.imr != 0
	line := r.irq.Level()
	d.mu.Unlock()
	switch s.rxBufSize {
	case 8192, 16384, 32768, 65536:
	default:
		t.Fatalf("rx ring size %d", s.rxBufSize)
	}
	if s.rxBufPtr >= s.rxBufSize || s.rxBufAddr >= s.rxBufSize {
		t.Fatalf("ring pointers %#x/%#x outside %#x", s.rxBufPtr, s.rxBufAddr, s.rxBufSize)
	}
	if s.currTxDesc >= 4 || s.cpTxDesc >= cpTxRing || s.cpRxDesc >= cpRxRing {
		t.Fatalf("descriptor indices %d %d %d", s.currTxDesc, s.cpTxDesc, s.cpRxDesc)
	}
	if s.ee.address >= eeWords || s.ee.tick > 16 {
		t.Fatalf("eeprom state %+v", s.ee)
	}
	if line != level {
		t.Fatalf("INTx %v with ISR %#x IMR %#x", line, s.isr, s.imr)
	}
	for f := r.be.TxQueue().Pop(); f != nil; f = r.be.TxQueue().Pop() {
		if n := len(f.Bytes()); n < 14 || n > netback.MaxFrame {
			t.Fatalf("sent a %d-byte frame", n)
		}
		f.Release()
	}
}

// FuzzScript runs a byte string as a guest program: register reads and
// writes of every width anywhere in the BAR, guest memory writes (rings,
// descriptors, buffers), frames arriving from the network, resets, a
// snapshot round trip. Whatever it does, the device keeps its invariants
// and sends only frames a back-end takes.
func FuzzScript(f *testing.F) {
	// A C+ transmit: ring at 0x1000, one owned FS|LS descriptor of 64
	// bytes at 0x2000, polled.
	cp := []byte{
		1, regCpCmd, 2, 0x03, 0, 0, 0,
		1, regChipCmd, 1, 0x0c, 0, 0, 0,
		1, regTxAddr0, 4, 0x00, 0x10, 0, 0,
		2, 0x00, 0x10, 16, 64, 0, 0, 0xb0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0,
		1, regTxPoll, 1, 0x40, 0, 0, 0,
	}
	f.Add(cp)
	// A normal transmit and a receive into a ring at 0x4000.
	f.Add([]byte{
		1, regChipCmd, 1, 0x0c, 0, 0, 0,
		1, regRxBuf, 4, 0, 0x40, 0, 0,
		1, regRxConfig, 4, 0x8f, 0, 0, 0,
		1, regIntrMask, 2, 0xff, 0xff, 0, 0,
		1, regTxAddr0, 4, 0, 0x20, 0, 0,
		1, regTxStatus0, 4, 100, 0, 0, 0,
		3, 80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		1, regRxBufPtr, 2, 0xf0, 0xff, 0, 0,
	})
	f.Add([]byte{4, 5, 1, regCfg9346, 1, 0x80, 0, 0, 0, 1, regCfg9346, 1, 0x88, 0, 0, 0})
	f.Fuzz(func(t *testing.T, prog []byte) {
		r := newFuzzRig(t)
		rg := regs{r.d}
		for len(prog) > 0 {
			op := prog[0] % 6
			prog = prog[1:]
			switch op {
			case 0, 1: // read or write: offset, size, 4 value bytes
				if len(prog) < 6 {
					return
				}
				size := []uint8{1, 2, 4, 8}[prog[1]%4]
				a := devices.Access{Offset: uint64(prog[0]), Size: size}
				if a.Offset+uint64(size) > RegSize {
					a.Offset = RegSize - uint64(size)
				}
				if op == 0 {
					rg.Read(a)
				} else {
					rg.Write(a, uint64(binary.LittleEndian.Uint32(prog[2:])))
				}
				prog = prog[6:]
			case 2: // guest memory: 16-bit address (x16), length, bytes
				if len(prog) < 3 {
					return
				}
				addr := uint64(binary.LittleEndian.Uint16(prog)) * 16 % fuzzMem
				n := min(int(prog[2]), len(prog)-3)
				r.mem.Write(memory.GPA(addr), prog[3 : 3+n][:min(n, int(fuzzMem-addr))])
				prog = prog[3+n:]
			case 3: // a frame from the network: length, then the first bytes
				if len(prog) < 1 {
					return
				}
				n := int(prog[0]) * 8
				fr := make([]byte, n)
				copy(fr, prog[1:])
				prog = prog[min(len(prog), 1+n):]
				r.d.mu.Lock()
				if n <= netback.MaxFrame {
					r.d.receiveFrameLocked(fr, true)
				}
				r.d.mu.Unlock()
			case 4: // drain the back-end (else the transmit queue fills)
				r.check(t)
			case 5: // reset, or a snapshot round trip
				if len(prog) > 0 && prog[0]&1 == 0 {
					r.d.Reset()
				} else {
					snap, err := r.d.Snapshot()
					if err != nil {
						t.Fatal(err)
					}
					if err := r.d.Restore(snap); err != nil {
						t.Fatalf("own snapshot refused: %v", err)
					}
				}
				if len(prog) > 0 {
					prog = prog[1:]
				}
			}
		}
		r.check(t)
	})
}

// FuzzRings fills guest memory with the fuzzer's bytes and points both C+
// rings and the normal-mode ring at it: every descriptor the guest could
// write is decoded, walks stay bounded, frames sent are well-formed.
func FuzzRings(f *testing.F) {
	seed := make([]byte, 2048)
	for i := 0; i < 8; i++ {
		binary.LittleEndian.PutUint32(seed[16*i:], cpTxOwn|cpTxFS|cpTxLS|cpTxIPCS|cpTxTCPCS|uint32(60+i))
		binary.LittleEndian.PutUint64(seed[16*i+8:], 0x400)
	}
	f.Add(seed, uint16(0x8f), uint8(3))
	// A large send: a TCP frame at 0x400 cut at an MSS of 100.
	tso := make([]byte, 4096)
	tf := tcpFrame(1500)
	copy(tso[0x400:], tf)
	binary.LittleEndian.PutUint32(tso, cpTxOwn|cpTxFS|cpTxLS|cpTxEOR|cpTxLGSEN|100<<16|uint32(len(tf)))
	binary.LittleEndian.PutUint64(tso[8:], 0x400)
	f.Add(tso, uint16(0x8f), uint8(3))
	f.Add(tso, uint16(0x8f), uint8(0x83)) // in loopback
	f.Add(make([]byte, 64), uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, image []byte, rcr uint16, mode uint8) {
		r := newFuzzRig(t)
		if len(image) > fuzzMem {
			image = image[:fuzzMem]
		}
		r.mem.Write(0, image)
		rg := regs{r.d}
		w := func(off uint8, size uint8, v uint64) {
			rg.Write(devices.Access{Offset: uint64(off), Size: size}, v)
		}
		w(regCpCmd, 2, uint64(mode&3)|cpRxVLAN)
		w(regChipCmd, 1, cmdTxEnb|cmdRxEnb)
		w(regTxConfig, 4, uint64(mode&0x80)<<10|uint64(mode&0x80)<<11) // loopback sometimes
		w(regTxAddr0, 4, 0)
		w(regRxRingLo, 4, 0x10)
		w(regRxBuf, 4, 0x100)
		w(regRxConfig, 4, uint64(rcr))
		w(regIntrMask, 2, 0xffff)
		w(regTxPoll, 1, 0x40)
		r.check(t)
		for i := range 4 {
			fr := image
			if len(fr) > netback.MaxFrame {
				fr = fr[:netback.MaxFrame]
			}
			r.d.mu.Lock()
			r.d.receiveFrameLocked(fr[:len(fr)>>i], true)
			r.d.mu.Unlock()
		}
		w(regTxPoll, 1, 0x40)
		for n := range 4 {
			w(regTxAddr0+4*uint8(n), 4, uint64(n)*0x100)
			w(regTxStatus0+4*uint8(n), 4, uint64(binary.LittleEndian.Uint16(append(image, 0, 0)[0:])))
		}
		r.check(t)
	})
}
