package qnic

import (
	"bytes"
	"testing"
	"time"
)

func TestCF8(t *testing.T) {
	if got := CF8(4, 0x13); got != 0x80002010 {
		t.Errorf("CF8(4, 0x13) = %#x, want 0x80002010", got)
	}
}

// TestStart brings an e1000 up in QEMU: its identity through 0xcf8/0xcfc,
// the BAR the test programs, a frame it transmits coming out of the
// socket netdev.
func TestStart(t *testing.T) {
	mac := [6]byte{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	q := Start(t, Config{Device: "e1000", MAC: mac, Slot: 4, IRQ: 11})
	if id := q.CfgRead(0); id != 0x100e8086 {
		t.Fatalf("vendor:device %#x, want 0x100e8086", id)
	}
	const mmio = 0xe0000000
	q.CfgWrite(0x10, 4, mmio)
	q.CfgWrite(0x04, 2, 0x7)
	if got := q.CfgRead(0x10); got&^0xf != mmio {
		t.Fatalf("BAR0 %#x, want %#x", got, mmio)
	}
	// RAL0/RAH0 hold the MAC QEMU was given (8254x manual 13.4.62).
	if lo, hi := q.Read(mmio+0x5400, 4), q.Read(mmio+0x5404, 4); lo != 0x12005452 || hi&0xffff != 0x5634 {
		t.Fatalf("RAL0/RAH0 %#x %#x", lo, hi)
	}
	// One legacy descriptor: a 60-byte frame at 0x2000, ring at 0x1000.
	frame := bytes.Repeat([]byte{0xab}, 60)
	q.MemWrite(0x2000, frame)
	desc := []byte{0, 0x20, 0, 0, 0, 0, 0, 0, 60, 0, 0, 0x0b, 0, 0, 0, 0} // EOP|IFCS|RS
	q.MemWrite(0x1000, desc)
	q.Write(mmio+0x3800, 4, 0x1000) // TDBAL
	q.Write(mmio+0x3808, 4, 128)    // TDLEN
	q.Write(mmio+0x0400, 4, 0x2)    // TCTL.EN
	q.Write(mmio+0x3818, 4, 1)      // TDT
	got := q.Sent()
	if !bytes.Equal(got, frame) {
		t.Fatalf("sent %x, want %x", got, frame)
	}
	deadline := time.Now().Add(2 * time.Second)
	for q.MemRead(0x1000+12, 1)[0]&1 == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the descriptor's DD bit never came")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
