package privcmd

import (
	"reflect"
	"testing"

	"godm/hyp/xenabi"
)

// TestIRQFDLayout checks the mirrors of include/uapi/xen/privcmd.h
// (Linux >= 6.7), which the installed Xen 4.17 headers predate: field
// offsets and sizes as x86_64 GCC lays the C structs out, and the request
// numbers (_IOW('P', 8/9, struct)).
func TestIRQFDLayout(t *testing.T) {
	tests := []struct {
		v       any
		size    uintptr
		offsets map[string]uintptr
	}{
		{xenabi.PrivcmdIrqfd{}, 24, map[string]uintptr{"DMOp": 0, "Size": 8, "Fd": 12, "Flags": 16, "Dom": 20, "Pad": 22}},
		{xenabi.PrivcmdIoeventfd{}, 48, map[string]uintptr{
			"Ioreq": 0, "Ports": 8, "Addr": 16, "AddrLen": 24, "EventFd": 28,
			"VCPUs": 32, "VQ": 36, "Flags": 40, "Dom": 44, "Pad": 46,
		}},
	}
	for _, tt := range tests {
		typ := reflect.TypeOf(tt.v)
		if typ.Size() != tt.size {
			t.Errorf("sizeof %s = %d, want %d", typ.Name(), typ.Size(), tt.size)
		}
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			want, ok := tt.offsets[f.Name]
			if !ok {
				t.Errorf("%s.%s: unexpected field", typ.Name(), f.Name)
				continue
			}
			if f.Offset != want {
				t.Errorf("offsetof %s.%s = %d, want %d", typ.Name(), f.Name, f.Offset, want)
			}
		}
	}
	reqs := []struct {
		name      string
		got, want uint
	}{
		{"IOCTL_PRIVCMD_IRQFD", xenabi.IOCTL_PRIVCMD_IRQFD, xenabi.IOC(1, 'P', 8, 24)},
		{"IOCTL_PRIVCMD_IOEVENTFD", xenabi.IOCTL_PRIVCMD_IOEVENTFD, xenabi.IOC(1, 'P', 9, 48)},
		{"IOCTL_PRIVCMD_IRQFD literal", xenabi.IOCTL_PRIVCMD_IRQFD, 0x40185008},
		{"IOCTL_PRIVCMD_IOEVENTFD literal", xenabi.IOCTL_PRIVCMD_IOEVENTFD, 0x40305009},
	}
	for _, r := range reqs {
		if r.got != r.want {
			t.Errorf("%s = %#x, want %#x", r.name, r.got, r.want)
		}
	}
}
