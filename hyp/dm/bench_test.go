package dm_test

import (
	"testing"

	"godm/hyp/dm"
	"godm/hyp/internal/kerneltest"
	"godm/hyp/privcmd"
)

// fakeClient returns a Client over the quiet recording fake: the cost of
// godm's own encoding and locking, without a kernel.
func fakeClient(b *testing.B) *dm.Client {
	b.Helper()
	k := kerneltest.New()
	p, err := privcmd.Open(k)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	k.SetQuiet(true)
	return dm.New(p, 7)
}

func BenchmarkInjectMSI(b *testing.B) {
	b.Run("fake", func(b *testing.B) {
		c := fakeClient(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := c.InjectMSI(0xfee00000, 0x41); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fake-parallel", func(b *testing.B) {
		c := fakeClient(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := c.InjectMSI(0xfee00000, 0x41); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("xensim", func(b *testing.B) {
		c, _, _ := simClient(b)
		b.ReportAllocs()
		for b.Loop() {
			if err := c.InjectMSI(0xfee00000, 0x41); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkSetISAIRQLevel(b *testing.B) {
	c := fakeClient(b)
	b.ReportAllocs()
	level := false
	for b.Loop() {
		level = !level
		if err := c.SetISAIRQLevel(4, level); err != nil {
			b.Fatal(err)
		}
	}
}
