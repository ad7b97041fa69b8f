package i440fx

import (
	"testing"

	"godm/pci"
	"godm/pci/pcitest"
)

// i440fxSeeds are meaningful scripts: firmware's PAM and SMRAM set-up,
// wide and straddling accesses, a reset in the middle.
func i440fxSeeds() [][]byte {
	return [][]byte{
		pcitest.Encode( // SeaBIOS make_bios_writable: PAM0..6 = 0x33, then read back
			pcitest.Step{Op: 0, Off: RegPAM, Size: 1, Val: 0x30},
			pcitest.Step{Op: 0, Off: RegPAM + 1, Size: 2, Val: 0x3333},
			pcitest.Step{Op: 0, Off: RegPAM + 3, Size: 4, Val: 0x33333333},
			pcitest.Step{Op: 1, Off: RegPAM - 1, Size: 8},
			pcitest.Step{Op: 0, Off: RegSMRAM, Size: 1, Val: 0x0a},
		),
		pcitest.Encode( // identity writes, unaligned header writes, a reset
			pcitest.Step{Op: 0, Off: 0, Size: 4, Val: 0xffffffff},
			pcitest.Step{Op: 0, Off: 0x05, Size: 4, Val: 0xffffffff},
			pcitest.Step{Op: 3, Val: 0xffffffff},
			pcitest.Step{Op: 0, Off: 0x3e, Size: 4, Val: 0x01020304},
			pcitest.Step{Op: 2},
			pcitest.Step{Op: 1, Off: 0x3c, Size: 4},
		),
		pcitest.Encode( // accesses straddling the 256-byte and 4 KiB ends
			pcitest.Step{Op: 0, Off: 0xfe, Size: 4, Val: 0xaabbccdd},
			pcitest.Step{Op: 1, Off: 0xfd, Size: 8},
			pcitest.Step{Op: 0, Off: 0x800e, Size: 4, Val: 0x12345678},
			pcitest.Step{Op: 1, Off: 0x800d, Size: 4},
			pcitest.Step{Op: 0, Off: 0x40, Size: 3, Val: 0x12345678},
		),
	}
}

// FuzzConfigScript runs a script of configuration reads and writes (sizes
// 1, 2, 4, 8 and the invalid 3, any offset, unaligned and straddling),
// restored error bits and resets against the host bridge, checking every
// access against the learned masks (pcitest.ConfigChecker), that the
// identity never changes, that the PAM and SMRAM accessors agree with
// configuration space, and that a reset restores the reset image.
func FuzzConfigScript(f *testing.F) {
	for _, s := range i440fxSeeds() {
		f.Add(s)
	}
	masks := pcitest.LearnMasks(f, func() (*pci.Device, func()) {
		d, err := New(Config{RAMSize: 128 << 20})
		if err != nil {
			f.Fatal(err)
		}
		return d.Function(), nil
	})
	f.Fuzz(func(t *testing.T, script []byte) {
		d, spaces, s := attach(t)
		c := pcitest.NewConfigChecker(t, spaces.PCI, s, d.Function(), masks, pcitest.StatusINTx)
		for st := range pcitest.Steps(script) {
			switch st.Op % 4 {
			case 0:
				c.Write(t, st.ConfigOffset(), st.Size, st.Val)
			case 1:
				c.Read(t, st.ConfigOffset(), st.Size)
			case 2:
				c.Reset(t, d.Reset)
			case 3:
				c.SetW1C(t, st.Val)
			}
			c.Check(t)
			for i := range NumPAM {
				if got, want := d.PAM(i), uint8(spaces.PCI.Read(s, uint32(RegPAM+i), 1, 0)); got != want {
					t.Fatalf("PAM(%d) = %#x, config %#x", i, got, want)
				}
			}
			if got, want := d.SMRAM(), uint8(spaces.PCI.Read(s, RegSMRAM, 1, 0)); got != want {
				t.Fatalf("SMRAM() = %#x, config %#x", got, want)
			}
		}
		if got := spaces.PCI.Read(s, 0, 4, 0); got != DeviceID<<16|VendorID {
			t.Fatalf("identity = %#x", got)
		}
		if got := spaces.PCI.Read(s, 8, 4, 0); got != Class<<8|Revision {
			t.Fatalf("class/revision = %#x", got)
		}
		c.Reset(t, d.Reset)
	})
}
