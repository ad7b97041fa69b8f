package i8042

import (
	"testing"

	"godm/devices"
	"godm/internal/testfake"
	"godm/pci/pcitest"
)

func i8042Seeds() [][]byte {
	cmd := func(v uint64) pcitest.Step { return pcitest.Step{Op: 0, Off: 4, Size: 1, Val: v} }
	data := func(v uint64) pcitest.Step { return pcitest.Step{Op: 0, Off: 0, Size: 1, Val: v} }
	read := pcitest.Step{Op: 1, Off: 0, Size: 1}
	return [][]byte{
		pcitest.Encode( // SeaBIOS/Linux probe: self-test, command byte, keyboard reset and enable
			cmd(0xaa), read, cmd(0x20), read, cmd(0x60), data(0x47),
			data(0xff), read, read, data(0xf4), read,
			pcitest.Step{Op: 2, Val: 0x1c}, read, read,
		),
		pcitest.Encode( // the mouse through 0xd4: reset, stream mode, a movement, a reboot pulse
			cmd(0xa8), cmd(0xd4), data(0xff), read, read, read,
			cmd(0xd4), data(0xf4), read,
			pcitest.Step{Op: 3, Val: 0x00fd0305}, read, read, read,
			cmd(0xfe),
		),
		pcitest.Encode( // wide and unaligned accesses, disabled ports with data pending, a reset
			pcitest.Step{Op: 0, Off: 0, Size: 4, Val: 0xad},
			pcitest.Step{Op: 1, Off: 3, Size: 2},
			cmd(0xad), pcitest.Step{Op: 2, Val: 0x1e}, read,
			pcitest.Step{Op: 4}, cmd(0x20), read,
			cmd(0xd1), data(0x00),
		),
	}
}

// FuzzScript drives the controller through the port space (sizes 1 to 8,
// at and around ports 0x60 and 0x64, so most wide accesses miss) with
// keyboard and mouse input and resets interleaved. After every step the
// controller's invariants hold (see checkInvariants), the two IRQ lines
// carry the controller's levels and are never sent the same level twice,
// every reset pulse reached the ResetRequester once, a missed access
// changed nothing, and after a reset the status, command byte and lines
// are the power-on ones.
func FuzzScript(f *testing.F) {
	for _, s := range i8042Seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		kbd, aux := &testfake.Recorder{}, &testfake.Recorder{}
		resets := uint64(0)
		c := New(Config{KeyboardIRQ: kbd, MouseIRQ: aux, Reset: ResetFunc(func() { resets++ })})
		pio := devices.NewSpace("pio")
		if err := Register(pio, c); err != nil {
			t.Fatal(err)
		}
		statusNow := func() uint8 {
			c.mu.Lock()
			defer c.mu.Unlock()
			return c.status
		}
		i := -1
		for st := range pcitest.Steps(script) {
			i++
			port := uint64(DataPort) + uint64(st.Off)%6
			hit := st.Size == 1 && (port == DataPort || port == StatusPort)
			switch st.Op % 5 {
			case 0:
				before := statusNow()
				pio.Write(port, st.Size, 0, st.Val)
				if !hit && statusNow() != before {
					t.Fatalf("step %d: missed write %#x/%d changed status %#x -> %#x", i, port, st.Size, before, statusNow())
				}
			case 1:
				v := pio.Read(port, st.Size, 0)
				if !hit && v != devices.SizeMask(st.Size) {
					t.Fatalf("step %d: missed read %#x/%d = %#x", i, port, st.Size, v)
				}
				if hit && v > 0xff {
					t.Fatalf("step %d: read %#x = %#x, wider than a byte", i, port, v)
				}
			case 2:
				c.PutScancodes([]byte{byte(st.Val), byte(st.Val >> 8), byte(st.Val >> 16)}[:1+st.Off%3])
			case 3:
				c.MouseEvent(int(int8(st.Val)), int(int8(st.Val>>8)), int(int8(st.Val>>16))%3, byte(st.Val>>24))
			case 4:
				c.Reset()
				if got := statusNow(); got != resetStatus {
					t.Fatalf("step %d: status after reset = %#x, want %#x", i, got, resetStatus)
				}
				if kbd.Level() {
					t.Fatalf("step %d: IRQ 1 high after reset", i)
				}
				if aux.Level() {
					t.Fatalf("step %d: IRQ 12 high after reset", i)
				}
				pio.Write(StatusPort, 1, 0, 0x20)
				if got := pio.Read(DataPort, 1, 0); got != resetMode {
					t.Fatalf("step %d: command byte after reset = %#x, want %#x", i, got, resetMode)
				}
			}
			checkInvariants(t, c, i)
			k, kRep := kbd.Level(), kbd.Repeated()
			m, mRep := aux.Level(), aux.Repeated()
			if kRep || mRep {
				t.Fatalf("step %d: a line was sent its level twice (kbd %v, mouse %v)", i, kRep, mRep)
			}
			c.mu.Lock()
			kl, ml := c.kbdLevel, c.mouseLevel
			c.mu.Unlock()
			if k != kl || m != ml {
				t.Fatalf("step %d: lines kbd %v mouse %v, controller %v %v", i, k, m, kl, ml)
			}
			if got := c.Stats().ResetRequests; got != resets {
				t.Fatalf("step %d: %d reset requests counted, %d delivered", i, got, resets)
			}
		}
	})
}
