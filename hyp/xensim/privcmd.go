package xensim

import (
	"sync"

	"godm/hyp"
	"godm/hyp/xenabi"

	"golang.org/x/sys/unix"
)

// vma is one privcmd mapping of the calling process: an inaccessible
// reservation that MMAPBATCH and MMAP_RESOURCE populate.
type vma struct {
	file      *privcmdFile
	mem       []byte
	addr      uintptr
	prot      int
	populated bool      // vm_private_data set: the first mapping was made
	mapped    []bool    // per page
	src       []pageSrc // per mapped page: what backs it
	released  bool      // Sim.Close replaced the contents
}

// pageSrc is the memfd page behind a populated VMA page.
type pageSrc struct {
	fd  int
	off int64
}

func (v *vma) end() uintptr { return v.addr + uintptr(len(v.mem)) }

// vmaTable holds the privcmd VMAs of the (single, simulated) process.
type vmaTable struct {
	mu sync.Mutex
	m  map[uintptr]*vma
}

func (t *vmaTable) init() { t.m = make(map[uintptr]*vma) }

// find is find_vma restricted to privcmd VMAs: the VMA containing addr,
// or nil.
func (t *vmaTable) find(addr uintptr) *vma {
	for _, v := range t.m {
		if addr >= v.addr && addr < v.end() {
			return v
		}
	}
	return nil
}

// closeAll releases what every VMA maps (Sim.Close): the guest and
// ioreq pages are replaced by anonymous zero pages, so that a device
// model still touching its view reads zeros instead of faulting, and the
// range itself goes away when its owner unmaps it.
func (t *vmaTable) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for a, v := range t.m {
		if v.released {
			continue
		}
		if err := replaceAnon(v.addr, len(v.mem), v.prot); err != nil {
			unix.Munmap(v.mem)
			delete(t.m, a)
			continue
		}
		v.released = true
		for i := range v.mapped {
			v.mapped[i] = false
		}
	}
}

// privcmdFile is an open /dev/xen/privcmd (drivers/xen/privcmd.c).
type privcmdFile struct {
	s      *Sim
	caller hyp.DomID

	mu       sync.Mutex
	restrict int32 // -1: DOMID_INVALID, no restriction
	closed   bool
}

func (s *Sim) newPrivcmd(caller hyp.DomID) *privcmdFile {
	return &privcmdFile{s: s, caller: caller, restrict: -1}
}

func (f *privcmdFile) restricted() (int32, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restrict, f.closed
}

// Mmap creates an empty privcmd VMA (privcmd_mmap): accesses fault until
// an MMAPBATCH or MMAP_RESOURCE populates it.
func (f *privcmdFile) Mmap(offset int64, length int, prot int) ([]byte, error) {
	if _, closed := f.restricted(); closed {
		return nil, unix.EBADF
	}
	if length <= 0 {
		return nil, unix.EINVAL
	}
	length = (length + pageSize - 1) &^ (pageSize - 1)
	mem, err := reserve(length)
	if err != nil {
		return nil, err
	}
	t := &f.s.vmas
	t.mu.Lock()
	defer t.mu.Unlock()
	v := &vma{file: f, mem: mem, addr: sliceAddr(mem), prot: prot, mapped: make([]bool, length/pageSize),
		src: make([]pageSrc, length/pageSize)}
	t.m[v.addr] = v
	return mem, nil
}

// Munmap unmaps a region returned by Mmap (or part of one). Ranges the
// simulator does not know are left alone: unmapping blindly could hit
// memory that was mapped at the same address since.
func (f *privcmdFile) Munmap(b []byte) error {
	if len(b) == 0 {
		return unix.EINVAL
	}
	t := &f.s.vmas
	t.mu.Lock()
	defer t.mu.Unlock()
	a := sliceAddr(b)
	if v := t.m[a]; v != nil && len(v.mem) == len(b) {
		delete(t.m, a)
		return unix.Munmap(v.mem)
	}
	if v := t.find(a); v != nil && a+uintptr(len(b)) <= v.end() && !v.released {
		// A partial unmap: keep the reservation, drop the pages.
		first := int(a-v.addr) / pageSize
		for i := first; i < len(v.mapped) && i < first+(len(b)+pageSize-1)/pageSize; i++ {
			v.mapped[i] = false
		}
		return unpopulate(a, len(b))
	}
	return nil
}

func (f *privcmdFile) Read([]byte) (int, error)  { return 0, unix.EINVAL }
func (f *privcmdFile) Write([]byte) (int, error) { return 0, unix.EINVAL }

// Fd returns -1: privcmd has no readiness to poll.
func (f *privcmdFile) Fd() int { return -1 }

// Close closes the file. Mappings made through it stay, as with a real
// file descriptor; Sim.Close releases them.
func (f *privcmdFile) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()
	f.s.forgetFile(f)
	return nil
}

// mmapBatch is privcmd_ioctl_mmap_batch (version 2).
func (f *privcmdFile) mmapBatch(dom uint16, addr uint64, gfns []uint64, errs []int32) error {
	r, closed := f.restricted()
	if closed {
		return unix.EBADF
	}
	if r >= 0 && uint16(r) != dom {
		return unix.EPERM
	}
	n := len(gfns)
	if n == 0 {
		return unix.EINVAL
	}
	for i := range errs {
		errs[i] = 0
	}
	s := f.s
	t := &s.vmas
	t.mu.Lock()
	defer t.mu.Unlock()
	v := t.find(uintptr(addr))
	if v == nil || v.released {
		return unix.EINVAL
	}
	a := uintptr(addr)
	if a%pageSize != 0 {
		return unix.EINVAL
	}
	first := int(a-v.addr) / pageSize
	if !v.populated {
		if a != v.addr || a+uintptr(n)*pageSize != v.end() {
			return unix.EINVAL
		}
	} else {
		if a+uintptr(n)*pageSize > v.end() {
			return unix.EINVAL
		}
		for i := first; i < first+n; i++ {
			if v.mapped[i] {
				return unix.EINVAL
			}
		}
	}
	v.populated = true

	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.domains[hyp.DomID(dom)]
	var pageErr unix.Errno
	switch {
	case d == nil || d.dead:
		pageErr = unix.ESRCH
	case f.caller != 0 && f.caller != d.cfg.DeviceModel && f.caller != d.id:
		pageErr = unix.EPERM
	}
	for i := 0; i < n; i++ {
		e := pageErr
		if e == 0 {
			fd, off, ok := d.lookupGFN(gfns[i])
			if !ok {
				// A hole: get_page_from_gfn finds no page and the foreign
				// mapping fails with -EINVAL (xen/arch/x86/mm.c:
				// mod_l1_entry; p2m_add_foreign likewise).
				e = unix.EINVAL
			} else if err := mapFixed(a+uintptr(i)*pageSize, pageSize, v.prot, fd, off); err != nil {
				e = errno(err)
			}
		}
		if e != 0 {
			errs[i] = -int32(e)
			continue
		}
		v.mapped[first+i] = true
		fd, off, _ := d.lookupGFN(gfns[i])
		v.src[first+i] = pageSrc{fd, off}
	}
	return nil
}

// mmapResource is privcmd_ioctl_mmap_resource with Xen's
// acquire_resource for XENMEM_resource_ioreq_server. For the size query
// (addr and num 0) it returns the number of frames.
func (f *privcmdFile) mmapResource(dom uint16, typ, id, idx uint32, num uint64, addr uint64) (uint64, error) {
	r, closed := f.restricted()
	if closed {
		return 0, unix.EBADF
	}
	if r >= 0 && uint16(r) != dom {
		return 0, unix.EPERM
	}
	if (addr != 0) != (num != 0) {
		return 0, unix.EINVAL
	}
	s := f.s
	// Lock order: vmas, then the hypervisor.
	t := &s.vmas
	t.mu.Lock()
	defer t.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	// rcu_lock_remote_domain_by_id and the XSM check.
	d := s.domains[hyp.DomID(dom)]
	if d == nil || d.dead {
		return 0, unix.ESRCH
	}
	if d.id == f.caller {
		return 0, unix.EPERM
	}
	if f.caller != 0 && f.caller != d.cfg.DeviceModel {
		return 0, unix.EPERM
	}
	if typ != xenabi.XENMEM_resource_ioreq_server {
		return 0, unix.EOPNOTSUPP // grant tables and others: not simulated
	}
	if !d.hvm {
		return 0, unix.EINVAL
	}
	// ioreq_server_max_frames: the buffered frame and one frame per 128
	// vCPUs.
	maxFrames := uint64(1 + (len(d.vcpus)*xenabi.IoreqSize+pageSize-1)/pageSize)
	if num == 0 {
		return maxFrames, nil
	}
	if id > 0xffff {
		return 0, unix.EINVAL
	}
	if uint64(idx) >= maxFrames || num > maxFrames-uint64(idx) {
		return 0, unix.EINVAL
	}
	v := t.find(uintptr(addr))
	a := uintptr(addr) &^ (pageSize - 1)
	if v == nil || v.released || a+uintptr(num)*pageSize > v.end() {
		return 0, unix.EINVAL
	}
	srv, err := d.getServer(f.caller, uint16(id))
	if err != nil {
		return 0, err
	}
	if err := srv.allocPages(); err != nil {
		return 0, err
	}
	for i := uint64(0); i < num; i++ {
		switch idx + uint32(i) {
		case xenabi.XENMEM_resource_ioreq_server_frame_bufioreq:
			if !srv.handlesBuf() {
				return 0, unix.ENOENT
			}
		case xenabi.XENMEM_resource_ioreq_server_frame_ioreq0:
		default:
			return 0, unix.EINVAL
		}
	}
	v.populated = true
	first := int(a-v.addr) / pageSize
	for i := uint64(0); i < num; i++ {
		off := int64(idx+uint32(i)) * pageSize
		if err := mapFixed(a+uintptr(i)*pageSize, pageSize, v.prot, srv.pages.fd, off); err != nil {
			return 0, err
		}
		v.mapped[first+int(i)] = true
		v.src[first+int(i)] = pageSrc{srv.pages.fd, off}
	}
	return num, nil
}

// restrictTo is privcmd_ioctl_restrict.
func (f *privcmdFile) restrictTo(dom uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.restrict < 0 {
		f.restrict = int32(dom)
		return nil
	}
	if uint16(f.restrict) != dom {
		return unix.EINVAL
	}
	return nil
}

// hcallFile is an open /dev/xen/hypercall: mmap gives locked, shared
// memory for hypercall buffers.
type hcallFile struct {
	mu     sync.Mutex
	maps   map[uintptr][]byte
	closed bool
}

func (h *hcallFile) Mmap(offset int64, length int, prot int) ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, unix.EBADF
	}
	b, err := unix.Mmap(-1, 0, length, prot, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, err
	}
	if h.maps == nil {
		h.maps = make(map[uintptr][]byte)
	}
	h.maps[sliceAddr(b)] = b
	return b, nil
}

// Munmap unmaps a buffer returned by Mmap; unknown ranges are left alone.
func (h *hcallFile) Munmap(b []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(b) == 0 {
		return unix.EINVAL
	}
	m, ok := h.maps[sliceAddr(b)]
	if !ok {
		return nil
	}
	delete(h.maps, sliceAddr(b))
	return unix.Munmap(m)
}

func (h *hcallFile) Read([]byte) (int, error)  { return 0, unix.EINVAL }
func (h *hcallFile) Write([]byte) (int, error) { return 0, unix.EINVAL }
func (h *hcallFile) Fd() int                   { return -1 }

// Close closes the file. Buffers stay mapped until unmapped (or the Sim
// is closed), like a real mapping outliving its fd.
func (h *hcallFile) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return nil
}

// release frees every buffer still mapped (Sim.Close): the shared
// memory is replaced by private zero pages, which the owner's Munmap
// then removes.
func (h *hcallFile) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for a, b := range h.maps {
		if err := replaceAnon(a, len(b), unix.PROT_READ|unix.PROT_WRITE); err != nil {
			unix.Munmap(b)
			delete(h.maps, a)
		}
	}
}

// Mappings returns how many privcmd VMAs (made by Mmap, not yet
// unmapped) are live, for leak checks.
func (s *Sim) Mappings() int {
	s.vmas.mu.Lock()
	defer s.vmas.mu.Unlock()
	return len(s.vmas.m)
}
