package privcmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"godm/hyp/xenabi"
)

// eventfdLayout is testdata/eventfd_layout.json: what
// tools/xencapture/eventfd_layout.c prints from the Linux uapi header
// <xen/privcmd.h> (Linux >= 6.7; eventfd-layout.sh builds it against
// Debian trixie's linux-libc-dev when the installed one predates it).
type eventfdLayout struct {
	Structs map[string]struct {
		Size   uintptr               `json:"size"`
		Align  uintptr               `json:"align"`
		Fields map[string][2]uintptr `json:"fields"`
	} `json:"structs"`
	Constants map[string]uint64 `json:"constants"`
}

// TestIRQFDLayout checks the hyp/xenabi mirrors of struct privcmd_irqfd and
// struct privcmd_ioeventfd, their request numbers and flags against the
// values generated from the C header: every C member has a Go field at the
// same offset with the same size, and nothing else.
func TestIRQFDLayout(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "eventfd_layout.json"))
	if err != nil {
		t.Fatal(err)
	}
	var l eventfdLayout
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		c      string
		v      any
		fields map[string]string // C member -> Go field
	}{
		{"privcmd_irqfd", xenabi.PrivcmdIrqfd{}, map[string]string{
			"dm_op": "DMOp", "size": "Size", "fd": "Fd", "flags": "Flags", "dom": "Dom", "pad": "Pad",
		}},
		{"privcmd_ioeventfd", xenabi.PrivcmdIoeventfd{}, map[string]string{
			"ioreq": "Ioreq", "ports": "Ports", "addr": "Addr", "addr_len": "AddrLen", "event_fd": "EventFd",
			"vcpus": "VCPUs", "vq": "VQ", "flags": "Flags", "dom": "Dom", "pad": "Pad",
		}},
	}
	for _, tt := range tests {
		typ := reflect.TypeOf(tt.v)
		cs, ok := l.Structs[tt.c]
		if !ok {
			t.Errorf("no struct %s in the header layout", tt.c)
			continue
		}
		if typ.Size() != cs.Size || uintptr(typ.Align()) != cs.Align {
			t.Errorf("%s: size %d align %d, C %s: size %d align %d", typ.Name(), typ.Size(), typ.Align(), tt.c, cs.Size, cs.Align)
		}
		if len(cs.Fields) != typ.NumField() || len(tt.fields) != len(cs.Fields) {
			t.Errorf("%s has %d fields, C %s %d members, the test maps %d", typ.Name(), typ.NumField(), tt.c, len(cs.Fields), len(tt.fields))
		}
		for cname, want := range cs.Fields {
			goName, ok := tt.fields[cname]
			if !ok {
				t.Errorf("%s.%s has no Go field", tt.c, cname)
				continue
			}
			f, ok := typ.FieldByName(goName)
			if !ok {
				t.Errorf("%s has no field %s (%s.%s)", typ.Name(), goName, tt.c, cname)
				continue
			}
			if got := [2]uintptr{f.Offset, f.Type.Size()}; got != want {
				t.Errorf("%s.%s at %d size %d, C %s.%s at %d size %d", typ.Name(), goName, got[0], got[1], tt.c, cname, want[0], want[1])
			}
		}
	}
	consts := []struct {
		name string
		got  uint64
	}{
		{"IOCTL_PRIVCMD_IRQFD", xenabi.IOCTL_PRIVCMD_IRQFD},
		{"IOCTL_PRIVCMD_IOEVENTFD", xenabi.IOCTL_PRIVCMD_IOEVENTFD},
		{"PRIVCMD_IRQFD_FLAG_DEASSIGN", xenabi.PRIVCMD_IRQFD_FLAG_DEASSIGN},
		{"PRIVCMD_IOEVENTFD_FLAG_DEASSIGN", xenabi.PRIVCMD_IOEVENTFD_FLAG_DEASSIGN},
	}
	if len(consts) != len(l.Constants) {
		t.Errorf("the header layout has %d constants, the test checks %d", len(l.Constants), len(consts))
	}
	for _, c := range consts {
		want, ok := l.Constants[c.name]
		if !ok {
			t.Errorf("no %s in the header layout", c.name)
		} else if c.got != want {
			t.Errorf("%s = %#x, C %#x", c.name, c.got, want)
		}
	}
}
