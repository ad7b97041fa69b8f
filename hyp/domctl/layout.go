package domctl

import (
	"encoding/binary"

	"godm/hyp/xenabi"
)

// codec encodes and decodes the command-specific union of one domctl
// interface version. u is the union (the structure after the header).
type codec interface {
	putBindPtIRQ(u []byte, b IRQBinding)
	putMemoryMapping(u []byte, gfn, mfn, nr uint64, add bool)
	putIoportMapping(u []byte, gport, mport, nr uint32, add bool)
	putIomemPermission(u []byte, mfn, nr uint64, allow bool)
	putIoportPermission(u []byte, port, nr uint32, allow bool)
	putIRQPermission(u []byte, pirq uint32, allow bool)
	getDomainInfo(u []byte) DomainInfo
}

// layout is one domctl interface version.
type layout struct {
	version uint32
	size    int // sizeof(struct xen_domctl)
	codec   codec
	maxPIRQ uint32 // largest PIRQ irq_permission can carry; 0: any
}

// layouts returns the implemented interface versions, newest first.
func layouts() []layout {
	return versionLayouts()
}

// layoutFor returns the implemented layout of version v.
func layoutFor(v uint32) (layout, bool) {
	for _, l := range layouts() {
		if l.version == v {
			return l, true
		}
	}
	return layout{}, false
}

// xenDomctlVersions maps Xen releases to their domctl interface versions
// (xen/include/public/domctl.h of each release).
func xenDomctlVersion(major, minor int) (uint32, bool) {
	return releaseVersion(major, minor)
}

// header size of struct xen_domctl: cmd, interface_version, domain, _pad.
const headerSize = 16

func putBool(b []byte, v bool) {
	if v {
		b[0] = 1
	} else {
		b[0] = 0
	}
}

// v15 is the layout of XEN_DOMCTL_INTERFACE_VERSION 0x15 (Xen 4.17);
// offsets are those of the xenabi.XenDomctl* mirrors, checked against the
// C headers by xenabi's layout test.
type v15 struct{}

func (v15) putBindPtIRQ(u []byte, b IRQBinding) {
	binary.LittleEndian.PutUint32(u[0:], b.MachineIRQ)
	binary.LittleEndian.PutUint32(u[4:], uint32(b.Kind))
	switch b.Kind {
	case ISA:
		u[8] = b.ISAIRQ
	case PCI, MSITranslate:
		u[8], u[9], u[10] = b.Bus, b.Device, b.Intx
	case MSI:
		u[8] = b.GVec
		binary.LittleEndian.PutUint32(u[12:], b.GFlags)
		binary.LittleEndian.PutUint64(u[16:], b.GTable)
	}
}

func (v15) putMemoryMapping(u []byte, gfn, mfn, nr uint64, add bool) {
	binary.LittleEndian.PutUint64(u[0:], gfn)
	binary.LittleEndian.PutUint64(u[8:], mfn)
	binary.LittleEndian.PutUint64(u[16:], nr)
	if add {
		binary.LittleEndian.PutUint32(u[24:], xenabi.DPCI_ADD_MAPPING)
	} else {
		binary.LittleEndian.PutUint32(u[24:], xenabi.DPCI_REMOVE_MAPPING)
	}
}

func (v15) putIoportMapping(u []byte, gport, mport, nr uint32, add bool) {
	binary.LittleEndian.PutUint32(u[0:], gport)
	binary.LittleEndian.PutUint32(u[4:], mport)
	binary.LittleEndian.PutUint32(u[8:], nr)
	if add {
		binary.LittleEndian.PutUint32(u[12:], xenabi.DPCI_ADD_MAPPING)
	} else {
		binary.LittleEndian.PutUint32(u[12:], xenabi.DPCI_REMOVE_MAPPING)
	}
}

func (v15) putIomemPermission(u []byte, mfn, nr uint64, allow bool) {
	binary.LittleEndian.PutUint64(u[0:], mfn)
	binary.LittleEndian.PutUint64(u[8:], nr)
	putBool(u[16:], allow)
}

func (v15) putIoportPermission(u []byte, port, nr uint32, allow bool) {
	binary.LittleEndian.PutUint32(u[0:], port)
	binary.LittleEndian.PutUint32(u[4:], nr)
	putBool(u[8:], allow)
}

func (v15) putIRQPermission(u []byte, pirq uint32, allow bool) {
	binary.LittleEndian.PutUint32(u[0:], pirq)
	putBool(u[4:], allow)
}

func (v15) getDomainInfo(u []byte) DomainInfo {
	return DomainInfo{
		Domain:          domID(binary.LittleEndian.Uint16(u[0:])),
		Flags:           binary.LittleEndian.Uint32(u[4:]),
		TotPages:        binary.LittleEndian.Uint64(u[8:]),
		MaxPages:        binary.LittleEndian.Uint64(u[16:]),
		SharedInfoFrame: binary.LittleEndian.Uint64(u[48:]),
		CPUTime:         binary.LittleEndian.Uint64(u[56:]),
		OnlineVCPUs:     binary.LittleEndian.Uint32(u[64:]),
		MaxVCPUID:       binary.LittleEndian.Uint32(u[68:]),
		CPUPool:         binary.LittleEndian.Uint32(u[92:]),
	}
}
