package domctl_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"godm/hyp/domctl"

	"golang.org/x/sys/unix"
)

// TestAssignDevice checks the encoding against struct
// xen_domctl_assign_device as domctl.h lays it out (no libxenctrl
// capture exists for it): header, then dev, flags, machine_sbdf at 8.
func TestAssignDevice(t *testing.T) {
	tests := []struct {
		name  string
		call  func(d *domctl.Domctl) error
		cmd   uint32
		flags uint32
	}{
		{"assign", func(d *domctl.Domctl) error { return d.AssignDevice(dom, 0x00030008, 0) }, 37, 0},
		{"assign relaxed", func(d *domctl.Domctl) error { return d.AssignDevice(dom, 0x00030008, domctl.RDMRelaxed) }, 37, 1},
		{"deassign", func(d *domctl.Domctl) error { return d.DeassignDevice(dom, 0x00030008) }, 47, 0},
		{"test_assign", func(d *domctl.Domctl) error { return d.TestAssignDevice(dom, 0x00030008) }, 45, 0},
	}
	for _, v := range []uint32{domctl.Version4_15, domctl.Version4_17, domctl.Version4_22} {
		for _, tt := range tests {
			got := capture(t, v, tt.call)
			want := make([]byte, len(got))
			le := binary.LittleEndian
			le.PutUint32(want[0:], tt.cmd)
			le.PutUint32(want[4:], v)
			le.PutUint16(want[8:], dom)
			le.PutUint32(want[16:], 0) // XEN_DOMCTL_DEV_PCI
			le.PutUint32(want[20:], tt.flags)
			le.PutUint32(want[24:], 0x00030008)
			if !bytes.Equal(got, want) {
				t.Errorf("%#x %s =\n% x\nwant\n% x", v, tt.name, got, want)
			}
		}
	}
	k, d := open(t)
	k.Domctl = func([]byte) int64 { return -int64(unix.EBUSY) }
	if err := d.AssignDevice(dom, 1, 0); !errors.Is(err, unix.EBUSY) {
		t.Errorf("err = %v, want EBUSY", err)
	}
}
