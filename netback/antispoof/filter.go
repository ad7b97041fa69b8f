package antispoof

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Filter is the classifier attached to one interface's ingress.
type Filter struct {
	mu       sync.Mutex
	prog     *ebpf.Program
	cfg, ctr *ebpf.Map
	tcx      link.Link          // TCX link (Linux 6.6+): dies with its fd
	cls      *netlink.BpfFilter // cls_bpf fallback on a clsact qdisc
	qdisc    netlink.Qdisc      // the clsact qdisc the fallback added, if any
	ifname   string
}

// Mode says how a filter is attached.
func (f *Filter) Mode() string {
	if f.tcx != nil {
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
	f := &Filter{ifname: ifname}
	fail := func(what string, err error) (*Filter, error) {
		f.Close()
		hint := ""
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			hint = " (needs CAP_BPF and CAP_NET_ADMIN)"
		} else if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.ENOSYS) {
			hint = " (the kernel has no BPF support for it)"
		}
		return nil, fmt.Errorf("anti-spoofing on %s: %s: %v%s", ifname, what, firstLine(err), hint)
	}
	f.cfg, err = ebpf.NewMap(&ebpf.MapSpec{Name: "godm_as_cfg", Type: ebpf.Array, KeySize: 4, ValueSize: cfgSize, MaxEntries: 1})
	if err != nil {
		return fail("create map", err)
	}
	f.ctr, err = ebpf.NewMap(&ebpf.MapSpec{Name: "godm_as_ctr", Type: ebpf.Array, KeySize: 4, ValueSize: 8 * uint32(NumCounters), MaxEntries: 1})
	if err != nil {
		return fail("create map", err)
	}
	f.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name:         "godm_antispoof",
		Type:         ebpf.SchedCLS,
		Instructions: program(p, f.cfg.FD(), f.ctr.FD()),
		License:      "MIT",
	})
	if err != nil {
		return fail("load program", err)
	}
	idx := l.Attrs().Index
	if !forceClsact {
		f.tcx, err = link.AttachTCX(link.TCXOptions{Interface: idx, Program: f.prog, Attach: ebpf.AttachTCXIngress})
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return fail("attach (tcx)", err)
		}
		f.tcx = nil
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
		Fd:           f.prog.FD(),
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

// Unbind goes back to dropping every frame (the NIC is gone).
func (f *Filter) Unbind() error { return f.put([cfgSize]byte{}) }

func (f *Filter) put(v [cfgSize]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil {
		return errors.New("anti-spoofing filter closed")
	}
	return f.cfg.Update(uint32(0), v[:], ebpf.UpdateAny)
}

// Counters reads the counters.
func (f *Filter) Counters() (Counters, error) {
	var c Counters
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ctr == nil {
		return c, errors.New("anti-spoofing filter closed")
	}
	var b [8 * NumCounters]byte
	if err := f.ctr.Lookup(uint32(0), b[:]); err != nil {
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
	if f.tcx != nil {
		errs = append(errs, f.tcx.Close())
		f.tcx = nil
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
	if f.prog != nil {
		errs = append(errs, f.prog.Close())
	}
	for _, m := range []*ebpf.Map{f.cfg, f.ctr} {
		if m != nil {
			errs = append(errs, m.Close())
		}
	}
	f.prog, f.cfg, f.ctr = nil, nil, nil
	return errors.Join(errs...)
}
