package hcalltest

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"godm/hyp/internal/kerneltest"
	"godm/hyp/kernel"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// Answers of the fake hypervisor, the same as tools/xencapture/capture.c.
const (
	FakeXenMajor        = 4
	FakeXenMinor        = 17
	FakeExtraVersion    = ".7"
	FakeCapabilities    = "xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
	FakePIRQ            = 55      // PIRQ chosen by map_pirq when asked for any
	FakeHVMParamBase    = 0x10000 // get_param answers FakeHVMParamBase + index
	FakeDomainTotPages  = 0x10000
	FakeDomainMaxPages  = 0x10100
	FakeSharedInfoFrame = 0xfeffe
	FakeOnlineVCPUs     = 4
)

// Kernel is the fake: a kerneltest.Kernel whose hypercalls are shaped and
// answered here.
type Kernel struct {
	*kerneltest.Kernel

	// DomctlVersion is the domctl interface version the fake hypervisor
	// accepts; others get EACCES, as from Xen. New sets 0x15 (Xen 4.17).
	DomctlVersion uint32
	// XenMinor is the minor version xen_version reports (major is 4).
	XenMinor int
	// Fail, when set, makes every hypercall with this op fail with
	// errno FailErrno (multicall entries: the entry's result).
	FailOp    uint64
	FailErrno unix.Errno
	// Domctl, when set, answers domctls of the accepted version instead
	// of the default (d is the whole struct xen_domctl; return 0 or
	// -errno).
	Domctl func(d []byte) int64

	mu      sync.Mutex
	regions [][]byte           // guarded by mu: live hypercall-device mappings
	calls   []kerneltest.Event // guarded by mu: shaped hypercalls
}

// New returns a fake kernel where every device exists.
func New() *Kernel {
	k := &Kernel{Kernel: kerneltest.New(), DomctlVersion: xenabi.XEN_DOMCTL_INTERFACE_VERSION_4_17, XenMinor: FakeXenMinor}
	k.Kernel.Script = k.script
	return k
}

var _ kernel.Kernel = (*Kernel)(nil)

// Open implements kernel.Kernel, tracking mappings of the hypercall device.
func (k *Kernel) Open(dev kernel.Device, flags int) (kernel.File, error) {
	f, err := k.Kernel.Open(dev, flags)
	if err != nil {
		return nil, err
	}
	return &file{File: f, k: k, dev: dev}, nil
}

type file struct {
	kernel.File
	k   *Kernel
	dev kernel.Device
}

func (f *file) Mmap(offset int64, length int, prot int) ([]byte, error) {
	mem, err := f.File.Mmap(offset, length, prot)
	if err == nil && f.dev == kernel.Hypercall {
		f.k.mu.Lock()
		f.k.regions = append(f.k.regions, mem)
		f.k.mu.Unlock()
	}
	return mem, err
}

func (f *file) Munmap(b []byte) error {
	f.k.mu.Lock()
	for i, r := range f.k.regions {
		if addr(r) == addr(b) {
			f.k.regions = append(f.k.regions[:i], f.k.regions[i+1:]...)
			break
		}
	}
	f.k.mu.Unlock()
	return f.File.Munmap(b)
}

// addr returns the address of b's first byte (reflect, not unsafe: the
// value is only compared and offset, never dereferenced).
func addr(b []byte) uint64 {
	if len(b) == 0 {
		return 0
	}
	return uint64(reflect.ValueOf(b).Pointer())
}

// mem returns the n bytes at address v inside a hypercall mapping, and
// the offset inside that mapping, or nil.
func (k *Kernel) mem(v uint64, n int) ([]byte, int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.regions {
		base := addr(r)
		if v >= base && v < base+uint64(len(r)) {
			off := v - base
			if n < 0 || off+uint64(n) > uint64(len(r)) {
				return nil, int64(off)
			}
			return r[off : off+uint64(n)], int64(off)
		}
	}
	return nil, 0
}

// Hypercalls returns the shaped hypercalls recorded so far.
func (k *Kernel) Hypercalls() []kerneltest.Event {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]kerneltest.Event(nil), k.calls...)
}

// LastHypercall returns the last shaped hypercall, failing the test if
// there is none.
func (k *Kernel) LastHypercall(tb testing.TB) kerneltest.Event {
	tb.Helper()
	calls := k.Hypercalls()
	if len(calls) == 0 {
		tb.Fatalf("hcalltest: no hypercall recorded")
	}
	return calls[len(calls)-1]
}

// ResetHypercalls forgets the recorded hypercalls.
func (k *Kernel) ResetHypercalls() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.calls = nil
}

func (k *Kernel) script(c *kerneltest.Call) (uintptr, error) {
	if c.Req != xenabi.IOCTL_PRIVCMD_HYPERCALL || len(c.Arg) < 48 {
		return kerneltest.Default(c)
	}
	s := &shaper{k: k, arg: &kerneltest.Buf{Name: "arg", Len: len(c.Arg), In: clone(c.Arg)}, mems: [][]byte{c.Arg}}
	s.hypercall(-1, 0, 8, "")
	r := k.answer(binary.LittleEndian.Uint64(c.Arg[0:]), args(c.Arg[8:]))
	s.arg.Out = clone(c.Arg)
	for i := range s.bufs {
		s.bufs[i].Out = clone(s.mems[i+1])
	}
	ev := kerneltest.Event{Kind: "ioctl", Dev: c.Dev, Req: c.Req, Arg: s.arg, Bufs: s.bufs, Ret: r}
	k.mu.Lock()
	k.calls = append(k.calls, ev)
	k.mu.Unlock()
	if r < 0 {
		return 0, unix.Errno(-r)
	}
	return uintptr(r), nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// args reads up to six 8-byte arguments.
func args(b []byte) [6]uint64 {
	var a [6]uint64
	for i := range a {
		if 8*i+8 <= len(b) {
			a[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
	}
	return a
}

// shaper collects the buffers reachable from a hypercall, in the order
// tools/xencapture/capture.c records them.
type shaper struct {
	k    *Kernel
	arg  *kerneltest.Buf
	bufs []kerneltest.Buf
	mems [][]byte
}

func (s *shaper) buf(bi int) (*kerneltest.Buf, []byte) {
	if bi < 0 {
		return s.arg, s.mems[0]
	}
	return &s.bufs[bi], s.mems[bi+1]
}

// follow records the pointer at off of buffer bi as pointing to n bytes
// named name, and returns the new buffer's index (-1 if NULL or not in a
// hypercall buffer).
func (s *shaper) follow(bi, off int, name string, n int) int {
	b, m := s.buf(bi)
	if off+8 > len(m) {
		return -1
	}
	v := binary.LittleEndian.Uint64(m[off:])
	p := kerneltest.Ptr{Off: off, Buf: -1, Value: v}
	var mem []byte
	switch {
	case v == 0:
		p.Region = "null"
	default:
		mem, p.RegionOff = s.k.mem(v, n)
		if mem == nil && p.RegionOff == 0 {
			p.Region = "user" // not a hypercall buffer: Xen could not read it
		} else {
			p.Region = "hypercall"
		}
	}
	if mem != nil || (v != 0 && n == 0 && p.Region == "hypercall") {
		p.Buf = len(s.bufs)
		s.bufs = append(s.bufs, kerneltest.Buf{Name: name, Len: n, In: clone(mem)})
		s.mems = append(s.mems, mem)
	}
	b, _ = s.buf(bi) // s.bufs may have moved
	b.Ptrs = append(b.Ptrs, p)
	return p.Buf
}

func xenVersionLen(cmd uint64) int {
	switch cmd {
	case xenabi.XENVER_extraversion:
		return xenabi.XenExtraversionLen
	case xenabi.XENVER_capabilities:
		return xenabi.XenCapabilitiesLen
	}
	return 0
}

// hypercall shapes the hypercall whose op is at opOff of buffer bi and
// whose arguments start at argOff.
func (s *shaper) hypercall(bi, opOff, argOff int, pfx string) {
	_, m := s.buf(bi)
	op := binary.LittleEndian.Uint64(m[opOff:])
	a := args(m[argOff:])
	A := func(i int) int { return argOff + 8*i }
	switch op {
	case xenabi.HYPERVISOR_xen_version:
		s.follow(bi, A(1), pfx+"xen_version arg", xenVersionLen(a[0]))
	case xenabi.HYPERVISOR_memory_op:
		switch a[0] & 0x3f {
		case xenabi.XENMEM_increase_reservation, xenabi.XENMEM_decrease_reservation, xenabi.XENMEM_populate_physmap:
			r := s.follow(bi, A(1), pfx+"xen_memory_reservation", 32)
			if r >= 0 {
				_, rm := s.buf(r)
				s.follow(r, 0, pfx+"extent_start", 8*int(binary.LittleEndian.Uint64(rm[8:])))
			}
		case xenabi.XENMEM_add_to_physmap:
			s.follow(bi, A(1), pfx+"xen_add_to_physmap", 24)
		default:
			s.follow(bi, A(1), pfx+"memory_op arg (length unknown)", 0)
		}
	case xenabi.HYPERVISOR_hvm_op:
		switch a[0] {
		case xenabi.HVMOP_set_param, xenabi.HVMOP_get_param:
			s.follow(bi, A(1), pfx+"xen_hvm_param", 16)
		default:
			s.follow(bi, A(1), pfx+"hvm_op arg (length unknown)", 0)
		}
	case xenabi.HYPERVISOR_physdev_op:
		switch a[0] {
		case xenabi.PHYSDEVOP_map_pirq:
			s.follow(bi, A(1), pfx+"physdev_map_pirq", 40)
		case xenabi.PHYSDEVOP_unmap_pirq:
			s.follow(bi, A(1), pfx+"physdev_unmap_pirq", 8)
		default:
			s.follow(bi, A(1), pfx+"physdev_op arg (length unknown)", 0)
		}
	case xenabi.HYPERVISOR_domctl:
		s.follow(bi, A(0), pfx+"xen_domctl", xenabi.XenDomctlSize)
	case xenabi.HYPERVISOR_multicall:
		n := int(a[1])
		if n < 0 || n > 64 {
			n = 0
		}
		mc := s.follow(bi, A(0), pfx+"multicall_entry array", 64*n)
		for i := 0; mc >= 0 && i < n; i++ {
			s.hypercall(mc, 64*i, 64*i+16, fmt.Sprintf("%smulticall[%d] ", pfx, i))
		}
	}
}

// answer plays the hypervisor for one hypercall, like capture.c.
func (k *Kernel) answer(op uint64, a [6]uint64) int64 {
	if k.FailOp != 0 && op == k.FailOp {
		return -int64(k.FailErrno)
	}
	switch op {
	case xenabi.HYPERVISOR_xen_version:
		switch a[0] {
		case xenabi.XENVER_version:
			return FakeXenMajor<<16 | int64(k.XenMinor)
		case xenabi.XENVER_extraversion:
			if m, _ := k.mem(a[1], xenabi.XenExtraversionLen); m != nil {
				copy(m, FakeExtraVersion+"\x00")
			}
		case xenabi.XENVER_capabilities:
			if m, _ := k.mem(a[1], xenabi.XenCapabilitiesLen); m != nil {
				copy(m, FakeCapabilities+"\x00")
			}
		}
		return 0
	case xenabi.HYPERVISOR_memory_op:
		switch a[0] & 0x3f {
		case xenabi.XENMEM_increase_reservation, xenabi.XENMEM_decrease_reservation, xenabi.XENMEM_populate_physmap:
			if m, _ := k.mem(a[1], 32); m != nil {
				return int64(binary.LittleEndian.Uint64(m[8:]))
			}
			return -int64(unix.EFAULT)
		}
		return 0
	case xenabi.HYPERVISOR_hvm_op:
		if a[0] == xenabi.HVMOP_get_param {
			if m, _ := k.mem(a[1], 16); m != nil {
				binary.LittleEndian.PutUint64(m[8:], FakeHVMParamBase+uint64(binary.LittleEndian.Uint32(m[4:])))
			}
		}
		return 0
	case xenabi.HYPERVISOR_physdev_op:
		if a[0] == xenabi.PHYSDEVOP_map_pirq {
			if m, _ := k.mem(a[1], 40); m != nil && int32(binary.LittleEndian.Uint32(m[12:])) < 0 {
				binary.LittleEndian.PutUint32(m[12:], FakePIRQ)
			}
		}
		return 0
	case xenabi.HYPERVISOR_domctl:
		m, _ := k.mem(a[0], 16)
		if m == nil {
			return -int64(unix.EFAULT)
		}
		if binary.LittleEndian.Uint32(m[4:]) != k.DomctlVersion {
			return -int64(unix.EACCES)
		}
		if k.Domctl != nil {
			d, _ := k.mem(a[0], xenabi.XenDomctlSize)
			return k.Domctl(d)
		}
		if binary.LittleEndian.Uint32(m[0:]) == xenabi.XEN_DOMCTL_getdomaininfo {
			if d, _ := k.mem(a[0], xenabi.XenDomctlSize); d != nil {
				u := d[16:]
				clear(u)
				copy(u[0:], d[8:10]) // domain
				binary.LittleEndian.PutUint32(u[4:], xenabi.XEN_DOMINF_hvm_guest|xenabi.XEN_DOMINF_hap)
				binary.LittleEndian.PutUint64(u[8:], FakeDomainTotPages)
				binary.LittleEndian.PutUint64(u[16:], FakeDomainMaxPages)
				binary.LittleEndian.PutUint64(u[48:], FakeSharedInfoFrame)
				binary.LittleEndian.PutUint32(u[64:], FakeOnlineVCPUs)
				binary.LittleEndian.PutUint32(u[68:], FakeOnlineVCPUs-1)
			}
		}
		return 0
	case xenabi.HYPERVISOR_multicall:
		n := int(a[1])
		m, _ := k.mem(a[0], 64*n)
		if m == nil {
			return -int64(unix.EFAULT)
		}
		for i := 0; i < n; i++ {
			e := m[64*i:]
			binary.LittleEndian.PutUint64(e[8:], uint64(k.answer(binary.LittleEndian.Uint64(e[0:]), args(e[16:64]))))
		}
		return 0
	}
	return -int64(unix.ENOSYS)
}
