package pci

import (
	"testing"

	"godm/devices"
	"godm/devices/devicetest"
)

func TestConformance(t *testing.T) {
	full := func(extended bool) func() devices.Handler {
		return func() devices.Handler {
			h := testHeader
			h.Extended = extended
			d := mustNew(t, h)
			must(t, d.SetBAR(0, BAR{Kind: BARMem32, Size: 0x4000}))
			must(t, d.SetBAR(2, BAR{Kind: BARMem64, Size: 0x1000}))
			must(t, d.SetROM(0x800, nil))
			_, err := d.AddMSI(MSIConfig{Vectors: 4, Addr64: true, PerVectorMask: true})
			must(t, err)
			_, err = d.AddMSIX(MSIXConfig{Vectors: 8, TableOffset: 0x1000, PBAOffset: 0x2000})
			must(t, err)
			must(t, d.DefineRegister(0xf0, 4, 0xabcd, 0xff, 0xff00))
			return d
		}
	}
	t.Run("conventional", func(t *testing.T) { devicetest.Run(t, full(false), ConfigSize+8) })
	t.Run("extended", func(t *testing.T) {
		if testing.Short() {
			t.Skip("4 KiB sweep skipped in -short mode")
		}
		devicetest.Run(t, full(true), ExtendedConfigSize)
	})
	t.Run("on a bus", func(t *testing.T) {
		devicetest.Run(t, func() devices.Handler {
			r := newRig(t)
			d := full(false)().(*Device)
			if _, err := r.bus.Add(d, 1, 0); err != nil {
				t.Fatal(err)
			}
			return d
		}, ConfigSize)
	})
}
