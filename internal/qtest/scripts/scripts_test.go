package scripts

import (
	"math/rand/v2"
	"strings"
	"testing"

	"godm/internal/qtest"
)

// checkSteps checks that every step is an access a vCPU and qtest can
// perform, inside [lo, hi].
func checkSteps(t *testing.T, name string, s []qtest.Step, lo, hi uint16) {
	t.Helper()
	if len(s) == 0 {
		t.Errorf("%s: empty script", name)
	}
	for i, st := range s {
		size := st.Size
		if size == 0 {
			size = 1
		}
		if size != 1 && size != 2 && size != 4 {
			t.Errorf("%s step %d (%s): size %d", name, i, st, st.Size)
		}
		if st.Port < lo || uint32(st.Port)+uint32(size)-1 > uint32(hi) {
			t.Errorf("%s step %d (%s): port outside %#x-%#x", name, i, st, lo, hi)
		}
		if st.Write && st.Value>>(8*uint(size)) != 0 {
			t.Errorf("%s step %d (%s): value wider than the access", name, i, st)
		}
		if st.Ignore != 0 && st.Why == "" {
			t.Errorf("%s step %d (%s): ignored bits without a reason", name, i, st)
		}
	}
}

func TestScriptsWellFormed(t *testing.T) {
	for name, s := range UART(COM1) {
		checkSteps(t, "UART "+name, s, COM1, COM1+7)
	}
	for name, s := range I8042() {
		checkSteps(t, "i8042 "+name, s, I8042Data, I8042Status)
		for i, st := range s {
			if st.Write && st.Port == I8042Status && st.Value&0xf1 == 0xf0 {
				t.Errorf("i8042 %s step %d pulses the reset line", name, i)
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	checkSteps(t, "UART random", UARTRandom(r, COM1, 500), COM1, COM1+7)
	checkSteps(t, "i8042 random", I8042Random(r, 500), I8042Data, I8042Status)
	checkSteps(t, "config", PCIConfig(0x0b, PIIX4PMDeviations()...), ConfigAddress, ConfigData+3)
	checkSteps(t, "config mechanism", ConfigMechanism("why"), ConfigAddress, ConfigData+3)
	checkSteps(t, "PM I/O", PIIX4PMIO(), ConfigAddress, PMTimer+3)
	checkSteps(t, "config random", PCIConfigRandom(r, 500, []uint8{0, 8, 11}, map[uint8][]Deviation{11: PIIX4PMDeviations()}),
		ConfigAddress, ConfigData+3)
}

func TestPCIConfig(t *testing.T) {
	s := PCIConfig(1<<3|3, PIIX4PMDeviations()...)
	// 64 reads at reset, 64-7 writes (not the six BARs and the ROM BAR),
	// 64 reads after; two steps each.
	if got, want := len(s), 2*(64+57+64); got != want {
		t.Fatalf("%d steps, want %d", got, want)
	}
	var ignored []string
	for i := 0; i < len(s); i += 2 {
		addr, data := s[i], s[i+1]
		if !addr.Write || addr.Port != ConfigAddress || addr.Size != 4 || addr.Value&0xffffff00 != 0x80000b00 {
			t.Fatalf("step %d (%s) does not address 00:01.3", i, addr)
		}
		reg := addr.Value & 0xfc
		if data.Write && (reg >= 0x10 && reg < 0x28 || reg == 0x30) {
			t.Errorf("step %d writes BAR %#x", i+1, reg)
		}
		if data.Ignore != 0 {
			ignored = append(ignored, data.Why)
			if reg != 0x58 || data.Ignore != 0xff000000 {
				t.Errorf("step %d: ignores %#x at %#x", i+1, data.Ignore, reg)
			}
		}
	}
	if len(ignored) != 2 || !strings.Contains(ignored[0], "SMM") {
		t.Errorf("deviation applied to %q, want the reset and the after-writes read of 0x58", ignored)
	}
}

func TestPCIConfigRandom(t *testing.T) {
	s := PCIConfigRandom(rand.New(rand.NewPCG(3, 4)), 4000, []uint8{0, 11}, map[uint8][]Deviation{11: PIIX4PMDeviations()})
	sizes := map[uint8]int{}
	for i := 0; i < len(s); i += 2 {
		addr, data := s[i], s[i+1]
		if !addr.Write || addr.Port != ConfigAddress || addr.Size != 4 {
			t.Fatalf("step %d (%s) is not an address write", i, addr)
		}
		devfn, reg := uint8(addr.Value>>8), uint32(addr.Value&0xfc)|uint32(data.Port-ConfigData)
		if devfn != 0 && devfn != 11 {
			t.Fatalf("step %d addresses devfn %#x", i, devfn)
		}
		if reg%uint32(data.Size) != 0 || reg&3+uint32(data.Size) > 4 {
			t.Errorf("step %d (%s): unaligned register %#x", i+1, data, reg)
		}
		if dw := reg &^ 3; dw >= 0x10 && dw < 0x28 || dw == 0x30 {
			t.Errorf("step %d (%s) touches BAR %#x", i+1, data, dw)
		}
		sizes[data.Size]++
		wantIgnore := uint64(0)
		if !data.Write && devfn == 11 && reg&^3 == 0x58 {
			wantIgnore = uint64(0xff000000>>(8*(reg&3))) & (1<<(8*uint(data.Size)) - 1)
		}
		if data.Ignore != wantIgnore {
			t.Errorf("step %d (%s, devfn %#x reg %#x): ignores %#x, want %#x", i+1, data, devfn, reg, data.Ignore, wantIgnore)
		}
	}
	for _, size := range []uint8{1, 2, 4} {
		if sizes[size] == 0 {
			t.Errorf("no %d-byte accesses", size)
		}
	}
}
