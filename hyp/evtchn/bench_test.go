package evtchn_test

import (
	"testing"

	"godm/hyp/evtchn"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/xensim"
	"godm/internal/testfake"
)

func BenchmarkNotify(b *testing.B) {
	b.Run("fake", func(b *testing.B) {
		k := kerneltest.New()
		h, err := evtchn.Open(k)
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		k.SetQuiet(true)
		b.ReportAllocs()
		for b.Loop() {
			if err := h.Notify(17); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("xensim", func(b *testing.B) {
		xen := testfake.NewXen(b, xensim.Config{}, testfake.RAM(1, 1<<20))
		sim, d := xen.Sim, xen.Dom
		h, err := evtchn.Open(sim.Kernel(0))
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		// A port of dom0 bound to an unbound port dom0 allocated for the
		// guest: notifies go nowhere, which is what we want to time.
		p, err := h.BindUnboundPort(d.ID())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if err := h.Notify(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkUnmask(b *testing.B) {
	k := kerneltest.New()
	h, err := evtchn.Open(k)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	k.SetQuiet(true)
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Unmask(17); err != nil {
			b.Fatal(err)
		}
	}
}
