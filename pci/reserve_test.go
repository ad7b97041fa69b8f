package pci

import (
	"errors"
	"testing"

	"godm/devices"
)

// foreignFn is a function registered in the configuration space outside
// the registry, as a passed-through function registers itself.
type foreignFn struct{}

func (foreignFn) Read(devices.Access) uint64   { return 0x12345678 }
func (foreignFn) Write(devices.Access, uint64) {}

// TestReservedSlots: slots held by functions the registry did not place
// (PCI passthrough) are never given to AddAuto, in either order of
// plugging, and are free again once released.
func TestReservedSlots(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, r *rig) []uint8 // slots AddAuto chose
	}{
		{"reserved first, then AddAuto", func(t *testing.T, r *rig) []uint8 {
			must(t, r.bus.Reserve(0))
			must(t, r.spaces.PCI.Register(devices.NewSBDF(0, 0, 0, 0), foreignFn{}))
			must(t, r.bus.Reserve(1))
			return addAutos(t, r, 2)
		}},
		{"ReserveAuto after AddAuto", func(t *testing.T, r *rig) []uint8 {
			got := addAutos(t, r, 2) // slots 0, 1
			s, err := r.bus.ReserveAuto()
			must(t, err)
			if s != 2 {
				t.Errorf("ReserveAuto = %d, want 2", s)
			}
			return append(got, addAutos(t, r, 1)...)
		}},
		{"registered without reserving, then AddAuto", func(t *testing.T, r *rig) []uint8 {
			must(t, r.spaces.PCI.Register(devices.NewSBDF(0, 0, 0, 0), foreignFn{}))
			return addAutos(t, r, 1)
		}},
		{"released slot is reused", func(t *testing.T, r *rig) []uint8 {
			must(t, r.bus.Reserve(0))
			must(t, r.bus.Release(0))
			return addAutos(t, r, 1)
		}},
	}
	want := map[string][]uint8{
		"reserved first, then AddAuto":               {2, 3},
		"ReserveAuto after AddAuto":                  {0, 1, 3},
		"registered without reserving, then AddAuto": {1},
		"released slot is reused":                    {0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			got := tt.run(t, r)
			if w := want[tt.name]; string(got) != string(w) {
				t.Errorf("AddAuto slots = %v, want %v", got, w)
			}
		})
	}
}

func addAutos(t *testing.T, r *rig, n int) []uint8 {
	t.Helper()
	var out []uint8
	for range n {
		sbdf, err := r.bus.AddAuto(mustNew(t, testHeader))
		must(t, err)
		out = append(out, sbdf.Dev())
	}
	return out
}

// TestReserveRefusals: a reserved slot refuses Add and AddFunction, an
// occupied slot refuses Reserve, and releasing twice fails.
func TestReserveRefusals(t *testing.T) {
	r := newRig(t)
	_, err := r.bus.Add(mustNew(t, testHeader), 4, 0)
	must(t, err)
	must(t, r.bus.Reserve(5))
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"Reserve occupied", r.bus.Reserve(4), ErrSlotInUse},
		{"Reserve twice", r.bus.Reserve(5), ErrSlotInUse},
		{"Reserve out of range", r.bus.Reserve(32), ErrInvalid},
		{"Add reserved", func() error { _, err := r.bus.Add(mustNew(t, testHeader), 5, 0); return err }(), ErrSlotInUse},
		{"Add reserved fn 1", func() error { _, err := r.bus.Add(mustNew(t, testHeader), 5, 1); return err }(), ErrSlotInUse},
		{"AddFunction reserved", func() error { _, err := r.bus.AddFunction(mustNew(t, testHeader), 5); return err }(), ErrSlotInUse},
		{"Release unreserved", r.bus.Release(6), ErrNotOnBus},
		{"Release", r.bus.Release(5), nil},
		{"Release twice", r.bus.Release(5), ErrNotOnBus},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) || (tt.want == nil && tt.err != nil) {
			t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	if r.bus.Reserved(5) {
		t.Error("slot 5 still reserved after Release")
	}
	// Once released, the slot takes an emulated function again.
	if _, err := r.bus.Add(mustNew(t, testHeader), 5, 0); err != nil {
		t.Errorf("Add after Release: %v", err)
	}
}
