package uart

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"godm/devices"
	"godm/devices/chardev"
	"godm/internal/testfake"
)

// TestUART_WithStreamBackend runs a guest-side polling driver against a
// real chardev backend over pipes: output reaches the host, and a host
// burst larger than the FIFO arrives complete thanks to back-pressure.
func TestUART_WithStreamBackend(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	defer outR.Close()
	be := chardev.NewStream(inR, outW, chardev.Options{})
	defer be.Close()
	clock := &testfake.Clock{}
	u := New(Config{Backend: be, Clock: clock})
	defer u.Close()
	acc := func(off uint64) devices.Access { return devices.Access{Offset: off, Size: 1} }

	u.Write(acc(regIIR), 0xc7) // FIFO on, trigger 14
	for _, c := range []byte("login: ") {
		u.Write(acc(regRBR), uint64(c))
	}
	got := make([]byte, 7)
	if _, err := io.ReadFull(outR, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "login: " {
		t.Errorf("host read %q, want %q", got, "login: ")
	}

	burst := bytes.Repeat([]byte("0123456789abcdef"), 64) // 1 KiB
	go inW.Write(burst)
	var rx []byte
	deadline := time.Now().Add(20 * time.Second)
	for len(rx) < len(burst) {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d bytes", len(rx), len(burst))
		}
		if u.Read(acc(regLSR))&lsrDR == 0 {
			// A guest spinning on LSR while the line brings the
			// next character: time moves to its slot.
			toNextSlot(u, clock)
			runtime.Gosched()
			continue
		}
		rx = append(rx, byte(u.Read(acc(regRBR))))
	}
	if !bytes.Equal(rx, burst) {
		t.Errorf("received bytes differ from the burst")
	}
	if got := u.Stats().Overruns; got != 0 {
		t.Errorf("Overruns = %d, want 0 (back-pressure)", got)
	}
}

func BenchmarkUART_THRWrite(b *testing.B) {
	u := New(Config{Backend: chardev.NewNull(), Clock: &testfake.Clock{}})
	a := devices.Access{Offset: regRBR, Size: 1}
	b.ReportAllocs()
	for b.Loop() {
		u.Write(a, 'x')
	}
}

func BenchmarkUART_LSRRead(b *testing.B) {
	u := New(Config{Backend: chardev.NewNull(), Clock: &testfake.Clock{}})
	a := devices.Access{Offset: regLSR, Size: 1}
	b.ReportAllocs()
	for b.Loop() {
		u.Read(a)
	}
}

// TestUART_ZeroAllocRealBackend measures the guest hot path with the real
// clock and a real stream backend (the writer goroutine drains a pipe).
func TestUART_ZeroAllocRealBackend(t *testing.T) {
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, outR)
	defer outR.Close()
	be := chardev.NewStream(nil, outW, chardev.Options{})
	defer be.Close()
	u := New(Config{Backend: be})
	defer u.Close()
	u.Write(devices.Access{Offset: regIIR, Size: 1}, 0x01)
	u.Write(devices.Access{Offset: regMCR, Size: 1}, mcrLoop)
	thr := devices.Access{Offset: regRBR, Size: 1}
	allocs := testing.AllocsPerRun(1000, func() {
		u.Write(thr, 'a') // loopback: arms the real timeout timer
		u.Read(thr)
	})
	u.Write(devices.Access{Offset: regMCR, Size: 1}, 0)
	allocs += testing.AllocsPerRun(1000, func() { u.Write(thr, 'b') })
	if allocs != 0 {
		t.Errorf("allocs = %v, want 0", allocs)
	}
}

// TestUART_Concurrent hammers one UART from several vCPU goroutines, the
// backend's input path and a real timer at once (run with -race).
func TestUART_Concurrent(t *testing.T) {
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	be := chardev.NewStream(inR, nil, chardev.Options{})
	defer be.Close()
	u := New(Config{Backend: be, IRQ: &testfake.Recorder{}})
	defer u.Close()
	go inW.Write(bytes.Repeat([]byte{'i'}, 4096))
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 2000; i++ {
				off := uint64((i + g) % 8)
				a := devices.Access{Offset: off, Size: 1, VCPU: uint32(g)}
				if i%3 == 0 {
					v := uint64(i)
					if off == regLCR {
						v &^= lcrDLAB
					}
					u.Write(a, v)
				} else {
					u.Read(a)
				}
			}
		}(g)
	}
	for g := 0; g < 4; g++ {
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatal("vCPU goroutines did not finish")
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rxCount < 0 || u.rxCount > fifoLen {
		t.Errorf("rxCount = %d", u.rxCount)
	}
}
