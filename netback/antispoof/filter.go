package antispoof

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Filter is the classifier attached to one interface's ingress.
type Filter struct {
	mu       sync.Mutex
	prog     int                // program fd, -1 once closed
	cfg, ctr int                // map fds
	tcx      int                // TCX link fd (Linux 6.6+), -1 for none: the link dies with it
	cls      *netlink.BpfFilter // cls_bpf fallback on a clsact qdisc
	qdisc    netlink.Qdisc      // the clsact qdisc the fallback added, if any
	ifname   string
}

// Mode says how a filter is attached.
func (f *Filter) Mode() string {
	if f.tcx >= 0 {
		return "tcx"
	}
	return "clsact"
}

// forceClsact makes Attach skip TCX (tests exercise the fallback).
var forceClsact bool

// Attach loads the classifier for p and attaches it to the ingress of the
// interface ifname. Frames are dropped until Bind. The error is one line
// naming what the kernel refused.
//
// With TCX (Linux 6.6+) the attachment is a BPF link held by an fd of
// this process: it goes when Close runs or the process exits. On older
// kernels it is a cls_bpf filter (direct action) on a clsact qdisc, which
// Close removes; if the process dies first it stays with the interface,
// and a tap godm created goes away with godm's fd.
func Attach(ifname string, p Policy) (*Filter, error) {
	if len(p.Prefixes) > 2*MaxPrefixes {
		return nil, fmt.Errorf("anti-spoofing: more than %d networks", 2*MaxPrefixes)
	}
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("anti-spoofing on %s: %v", ifname, err)
	}
	f := &Filter{ifname: ifname, prog: -1, cfg: -1, ctr: -1, tcx: -1}
	fail := func(what string, err error) (*Filter, error) {
		f.Close()
		hint := ""
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			hint = " (needs CAP_BPF and CAP_NET_ADMIN)"
		} else if errors.Is(err, unix.ENOSYS) {
			hint = " (the kernel has no BPF)"
		}
		return nil, fmt.Errorf("anti-spoofing on %s: %s: %v%s", ifname, what, firstLine(err), hint)
	}
	if f.cfg, err = newArrayMap("godm_as_cfg", cfgSize); err != nil {
		return fail("create map", err)
	}
	if f.ctr, err = newArrayMap("godm_as_ctr", 8*uint32(NumCounters)); err != nil {
		return fail("create map", err)
	}
	if f.prog, err = loadSchedCLS("godm_antispoof", program(p, f.cfg, f.ctr)); err != nil {
		return fail("load program", err)
	}
	idx := l.Attrs().Index
	if !forceClsact {
		f.tcx, err = attachTCX(f.prog, idx)
		if err == nil {
			return f, nil
		}
		// EINVAL: a kernel before TCX (6.6) knows no such attach type.
		if !errors.Is(err, unix.EINVAL) {
			return fail("attach (tcx)", err)
		}
	}
	// Fallback: clsact + cls_bpf in direct-action mode (tc-bpf(8)).
	q := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(q); err == nil {
		f.qdisc = q
	} else if !errors.Is(err, unix.EEXIST) {
		return fail("add clsact qdisc", err)
	}
	f.cls = &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: idx,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    netlink.MakeHandle(0, 1),
			Protocol:  unix.ETH_P_ALL,
			Priority:  1,
		},
		Fd:           f.prog,
		Name:         "godm_antispoof",
		DirectAction: true,
	}
	if err := netlink.FilterAdd(f.cls); err != nil {
		f.cls = nil
		return fail("attach (cls_bpf)", err)
	}
	return f, nil
}

func firstLine(err error) string {
	s := err.Error()
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

// Bind sets the guest's MAC: from now on its frames are checked, not all
// dropped.
func (f *Filter) Bind(mac [6]byte) error {
	var v [cfgSize]byte
	copy(v[cfgMAC:], mac[:])
	v[cfgBound] = 1
	return f.put(v)
}

// Unbind goes back to dropping every frame (the NIC is gone); nothing to
// do once the filter is closed.
func (f *Filter) Unbind() error {
	f.mu.Lock()
	closed := f.cfg < 0
	f.mu.Unlock()
	if closed {
		return nil
	}
	return f.put([cfgSize]byte{})
}

func (f *Filter) put(v [cfgSize]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg < 0 {
		return errors.New("anti-spoofing filter closed")
	}
	return mapUpdate(f.cfg, v[:])
}

// Bound returns the MAC the filter checks against, and false while none
// is bound (every frame dropped).
func (f *Filter) Bound() ([6]byte, bool, error) {
	var mac [6]byte
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg < 0 {
		return mac, false, errors.New("anti-spoofing filter closed")
	}
	var v [cfgSize]byte
	if err := mapLookup(f.cfg, v[:]); err != nil {
		return mac, false, err
	}
	copy(mac[:], v[cfgMAC:])
	return mac, v[cfgBound] != 0, nil
}

// Counters reads the counters.
func (f *Filter) Counters() (Counters, error) {
	var c Counters
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctr < 0 {
		return c, errors.New("anti-spoofing filter closed")
	}
	var b [8 * NumCounters]byte
	if err := mapLookup(f.ctr, b[:]); err != nil {
		return c, err
	}
	for i := range c {
		c[i] = binary.NativeEndian.Uint64(b[8*i:])
	}
	return c, nil
}

// Close detaches and frees the filter. It is idempotent.
func (f *Filter) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if f.tcx >= 0 {
		errs = append(errs, unix.Close(f.tcx))
		f.tcx = -1
	}
	if f.cls != nil {
		if err := netlink.FilterDel(f.cls); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("anti-spoofing on %s: remove filter: %v", f.ifname, err))
		}
		f.cls = nil
	}
	if f.qdisc != nil {
		if err := netlink.QdiscDel(f.qdisc); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("anti-spoofing on %s: remove clsact: %v", f.ifname, err))
		}
		f.qdisc = nil
	}
	for _, fd := range []int{f.prog, f.cfg, f.ctr} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	f.prog, f.cfg, f.ctr = -1, -1, -1
	return errors.Join(errs...)
}

// Supported reports whether this process may load and attach the filter
// here: nil, or the kernel's refusal (one line) of a map or a trivial
// classifier.
func Supported() error {
	m, err := newArrayMap("godm_as_probe", 8)
	if err != nil {
		return fmt.Errorf("create map: %v", err)
	}
	unix.Close(m)
	p, err := loadSchedCLS("godm_as_probe", asm.Instructions{asm.Mov.Imm(asm.R0, actNext), asm.Return()})
	if err != nil {
		return fmt.Errorf("load program: %v", err)
	}
	return unix.Close(p)
}
