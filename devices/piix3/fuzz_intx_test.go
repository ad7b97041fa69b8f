package piix3

import (
	"fmt"
	"testing"
)

// FuzzINTxWiredOR toggles the pins of random functions and checks that
// the level Xen last saw for each (slot, INTx) is the OR of the functions
// driving it, and that no level is sent twice in a row.
func FuzzINTxWiredOR(f *testing.F) {
	f.Add([]byte{0x10, 0x11, 0x90, 0x91, 0x10})
	f.Add([]byte{0x00, 0x08, 0x80, 0x88, 0xff})
	f.Fuzz(func(t *testing.T, script []byte) {
		m := newMachine(t)
		type key struct{ dev, fn, intx uint8 }
		want := map[key]bool{}
		for _, b := range script {
			// bit 7: level; bits 6:4: function; bits 3:2: pin-1; bits 1:0: slot 2..5
			k := key{dev: 2 + b&3, fn: b >> 4 & 7, intx: b >> 2 & 3}
			want[k] = b&0x80 != 0
			m.dev.INTx(k.dev, k.fn, k.intx+1).SetLevel(want[k])
		}
		last := map[string]string{}
		for _, e := range m.sink.Take() {
			var dev, intx int
			var level bool
			if _, err := fmt.Sscanf(e, "intx %d.%d=%t", &dev, &intx, &level); err != nil {
				t.Fatalf("unexpected call %q", e)
			}
			wire := fmt.Sprintf("%d.%d", dev, intx)
			if last[wire] == e {
				t.Fatalf("%q sent twice in a row", e)
			}
			last[wire] = e
		}
		for dev := uint8(2); dev < 6; dev++ {
			for intx := uint8(0); intx < 4; intx++ {
				or := false
				for fn := uint8(0); fn < 8; fn++ {
					or = or || want[key{dev, fn, intx}]
				}
				wire := fmt.Sprintf("%d.%d", dev, intx)
				got := last[wire] == fmt.Sprintf("intx %s=true", wire)
				if got != or {
					t.Fatalf("wire %s: Xen level %v, OR of functions %v", wire, got, or)
				}
			}
		}
	})
}
