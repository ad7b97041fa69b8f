package pci

import (
	"errors"
	"slices"
	"testing"

	"godm/internal/testfake"
)

func TestSaveRestore(t *testing.T) {
	src := newRig(t)
	a, sa := newMSIXDevice(t, src, nil)
	c := uint32(a.msix.cap)
	src.spaces.MMIO.Write(0xfe002000, 4, 0, 0xfee00000)
	src.spaces.MMIO.Write(0xfe002008, 4, 0, 0x51)
	src.cfgWrite(sa, c+2, 2, msixEnable)
	a.Interrupt(0) // masked: pending
	a.SetINTx(true)
	src.cfgWrite(sa, RegInterruptLine, 1, 11)
	st := a.Save()

	dst := newRig(t)
	d := mustNew(t, testHeader)
	must(t, d.SetBAR(0, BAR{Kind: BARMem32, Size: 0x4000}))
	_, err := d.AddMSIX(MSIXConfig{Vectors: 70, TableOffset: 0x2000, PBAOffset: 0x3000})
	must(t, err)
	sd, err := dst.bus.Add(d, 4, 0)
	must(t, err)
	st.Config[0] = 0xaa // identity is read-only: ignored
	must(t, d.Restore(st))
	if got := dst.cfgRead(sd, 0, 4); got != 0x00021b36 {
		t.Errorf("identity after restore = %#x", got)
	}
	if got := dst.cfgRead(sd, RegInterruptLine, 1); got != 11 {
		t.Errorf("interrupt line = %d, want 11", got)
	}
	if got := dst.spaces.MMIO.Ranges(); len(got) != 1 || got[0].Base != 0xfe000000 {
		t.Errorf("MMIO ranges after restore = %+v", got)
	}
	if !d.MSIXPending(0) {
		t.Errorf("pending vector 0 lost")
	}
	// MSI-X is enabled, so INTx stays quiet even with the condition set.
	if got := dst.levels(4, 0, 1); len(got) != 0 {
		t.Errorf("INTx levels = %v, want none", got)
	}
	dst.spaces.MMIO.Write(0xfe00200c, 4, 0, 0) // unmask: the pending message goes out
	if got, want := dst.takeMSIs(), []testfake.MSI{{Addr: 0xfee00000, Data: 0x51}}; !slices.Equal(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
	bad := a.Save()
	bad.MSIXTable = bad.MSIXTable[:16]
	if err := d.Restore(bad); !errors.Is(err, ErrState) {
		t.Errorf("Restore(short table) = %v, want ErrState", err)
	}
	bad = a.Save()
	bad.Version = 2
	if err := d.Restore(bad); !errors.Is(err, ErrState) {
		t.Errorf("Restore(version 2) = %v, want ErrState", err)
	}
}
