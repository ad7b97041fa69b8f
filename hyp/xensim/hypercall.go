package xensim

import (
	"encoding/binary"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// xen_version sub-ops; xen/include/public/version.h.
const (
	xenverVersion      = 0
	xenverExtraversion = 1
	xenverCapabilities = 3
	xenverChangeset    = 4
	xenverGetFeatures  = 6
	xenverPagesize     = 7
)

// hvm_op sub-ops; xen/include/public/hvm/hvm_op.h.
const (
	hvmopSetParam = 0
	hvmopGetParam = 1
)

// hypercall is IOCTL_PRIVCMD_HYPERCALL: the hypervisor side of the
// hypercalls the simulator decodes. Pointer arguments point into the
// caller's memory (hypercall buffers).
func (s *Sim) hypercall(caller hyp.DomID, op uint64, a [5]uint64) (uintptr, error) {
	switch op {
	case xenabi.HYPERVISOR_dm_op:
		return hypercallDMOp(s, caller, a[0], a[1], a[2])
	case xenabi.HYPERVISOR_xen_version:
		return s.xenVersion(a[0], a[1])
	case xenabi.HYPERVISOR_hvm_op:
		return s.hvmOp(caller, a[0], a[1])
	case xenabi.HYPERVISOR_physdev_op:
		return s.physdevOp(caller, a[0], a[1])
	case xenabi.HYPERVISOR_domctl:
		return s.domctlAssign(caller, a[0]) // assignment domctls, then s.domctl
	case xenabi.HYPERVISOR_memory_op:
		return s.memoryOp(caller, a[0], a[1])
	case xenabi.HYPERVISOR_multicall:
		return s.multicall(caller, a[0], a[1])
	}
	return 0, unix.ENOSYS
}

func (s *Sim) xenVersion(cmd, arg uint64) (uintptr, error) {
	putString := func(n int, v string) (uintptr, error) {
		b := guestBytes(arg, n)
		if b == nil {
			return 0, unix.EFAULT
		}
		clear(b)
		copy(b[:n-1], v)
		return 0, nil
	}
	switch cmd {
	case xenverVersion:
		return uintptr(s.cfg.XenMajor<<16 | s.cfg.XenMinor), nil
	case xenverExtraversion:
		return putString(16, ".0-xensim")
	case xenverCapabilities:
		return putString(1024, "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64")
	case xenverChangeset:
		return putString(64, "xensim")
	case xenverGetFeatures:
		b := guestBytes(arg, 8)
		if b == nil {
			return 0, unix.EFAULT
		}
		// No feature bits: the simulated dom0 is an ordinary PV-style
		// dom0 without XENFEAT_auto_translated_physmap.
		binary.LittleEndian.PutUint32(b[4:], 0)
		return 0, nil
	case xenverPagesize:
		return pageSize, nil
	}
	return 0, unix.ENOSYS
}

// hvmOp handles HVMOP_set_param/get_param (struct xen_hvm_param: domid
// u16, pad, index u32, value u64).
func (s *Sim) hvmOp(caller hyp.DomID, op, arg uint64) (uintptr, error) {
	if op != hvmopSetParam && op != hvmopGetParam {
		return 0, unix.ENOSYS
	}
	b := guestBytes(arg, 16)
	if b == nil {
		return 0, unix.EFAULT
	}
	domid := hyp.DomID(binary.LittleEndian.Uint16(b))
	if domid == xenabi.DOMID_SELF {
		domid = caller
	}
	index := binary.LittleEndian.Uint32(b[4:])
	if index >= hvmNrParams {
		return 0, unix.EINVAL
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.domains[domid]
	if d == nil || d.dead {
		return 0, unix.ESRCH
	}
	if !d.hvm {
		return 0, unix.EINVAL
	}
	if caller != 0 && caller != d.cfg.DeviceModel && caller != d.id {
		return 0, unix.EPERM
	}
	if op == hvmopSetParam {
		d.params[index] = binary.LittleEndian.Uint64(b[8:])
		return 0, nil
	}
	binary.LittleEndian.PutUint64(b[8:], d.params[index])
	return 0, nil
}
