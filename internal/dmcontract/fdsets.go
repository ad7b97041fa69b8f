package dmcontract

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"godm/internal/qmp"
)

// Bounds of the descriptors QMP clients may leave with godm (QEMU has
// none; a hostile client could otherwise exhaust the process's fds).
const (
	MaxFdsetFDs = 32 // in all fdsets together (add-fd)
	MaxNamedFDs = 16 // per monitor (getfd)
)

// FDSets are the descriptor sets of QMP's add-fd (QEMU monitor/fds.c),
// which commands name as "/dev/fdset/N" (libxl's save: add-fd, then
// xen-save-devices-state {filename: "/dev/fdset/N"}), and the named
// descriptors of getfd, per monitor. Safe for concurrent use.
//
// Unlike QEMU, godm does not track the duplicates it hands out (Open):
// a duplicate is its own descriptor, and removing the set's original
// does not wait for it.
type FDSets struct {
	mu    sync.Mutex
	sets  map[int64][]fdsetFD // oldest first, as QEMU lists them
	n     int
	named map[string]map[string]*os.File // monitor → name → fd
}

type fdsetFD struct {
	f      *os.File
	opaque *string
}

// NewFDSets returns empty sets.
func NewFDSets() *FDSets {
	return &FDSets{sets: map[int64][]fdsetFD{}, named: map[string]map[string]*os.File{}}
}

func fdOf(f *os.File) int64 { return int64(f.Fd()) }

// Add is add-fd: f joins fdset id (a new one if absent: with id < 0 the
// lowest free id). It returns the set's id and the descriptor's number.
func (s *FDSets) Add(f *os.File, id int64, opaque *string) (int64, int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sets[id]; !ok && id < 0 {
		for id = 0; ; id++ {
			if _, used := s.sets[id]; !used {
				break
			}
		}
	}
	if s.n >= MaxFdsetFDs {
		return 0, 0, qmp.Errorf("Too many file descriptors in fdsets (godm keeps at most %d): remove-fd some first", MaxFdsetFDs)
	}
	s.sets[id] = append(s.sets[id], fdsetFD{f: f, opaque: opaque})
	s.n++
	return id, fdOf(f), nil
}

// Remove is remove-fd: the descriptor fd of set id (every one with fd
// < 0) is closed; an emptied set disappears.
func (s *FDSets) Remove(id, fd int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.sets[id]
	found := false
	if ok {
		kept := set[:0]
		for _, e := range set {
			if fd < 0 || (!found && fdOf(e.f) == fd) {
				found = true
				e.f.Close()
				s.n--
				continue
			}
			kept = append(kept, e)
		}
		if len(kept) == 0 {
			delete(s.sets, id)
		} else {
			s.sets[id] = kept
		}
	}
	if !found && (fd >= 0 || !ok) {
		// QEMU 7.2 qmp_remove_fd.
		name := fmt.Sprintf("fdset-id:%d", id)
		if fd >= 0 {
			name += fmt.Sprintf(", fd:%d", fd)
		}
		return qmp.Errorf("File descriptor named '%s' not found", name)
	}
	return nil
}

// Query is query-fdsets: sets by descending id, descriptors oldest first
// (QEMU 7.2 qmp_query_fdsets prepends each set to the list it builds
// from its id-ordered sets, and each descriptor to the set's list built
// from its newest-first list).
func (s *FDSets) Query() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]int64, 0, len(s.sets))
	for id := range s.sets {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] > ids[j] })
	out := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		fds := make([]map[string]any, 0, len(s.sets[id]))
		for _, e := range s.sets[id] {
			m := map[string]any{"fd": fdOf(e.f)}
			if e.opaque != nil {
				m["opaque"] = *e.opaque
			}
			fds = append(fds, m)
		}
		out = append(out, map[string]any{"fdset-id": id, "fds": fds})
	}
	return out
}

// Open returns a duplicate of a descriptor named "/dev/fdset/N" whose
// access mode (O_RDONLY, O_WRONLY, O_RDWR) is flags' (QEMU
// monitor_fdset_dup_fd_add), or "fd:NAME"-less names as errors.
func (s *FDSets) Open(name string, flags int) (*os.File, error) {
	n, ok := strings.CutPrefix(name, "/dev/fdset/")
	id, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || id < 0 {
		return nil, fmt.Errorf("%q is not an fdset name (/dev/fdset/N)", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set, ok := s.sets[id]
	if !ok {
		return nil, fmt.Errorf("%s: no fdset %d", name, id)
	}
	for _, e := range set {
		fl, err := unix.FcntlInt(e.f.Fd(), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_ACCMODE != flags&unix.O_ACCMODE {
			continue
		}
		d, err := unix.FcntlInt(e.f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return os.NewFile(uintptr(d), name), nil
	}
	return nil, fmt.Errorf("%s: no descriptor open with the wanted access mode", name)
}

// ClientsGone is QEMU's monitor_fdsets_cleanup once the last monitor
// client has disconnected: the fdsets' descriptors are closed (godm
// tracks no duplicates in use, so all of them) and the sets disappear.
// Named descriptors (getfd) belong to their monitor and stay.
func (s *FDSets) ClientsGone() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, set := range s.sets {
		for _, e := range set {
			e.f.Close()
		}
		delete(s.sets, id)
	}
	s.n = 0
}

// GetFD is getfd: f is kept under name for monitor, replacing (and
// closing) an earlier one of that name.
func (s *FDSets) GetFD(monitor, name string, f *os.File) error {
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		// QEMU 7.2 monitor_get_fd's rule for getfd.
		return qmp.Errorf("Parameter 'fdname' expects a name not starting with a digit")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.named[monitor]
	if m == nil {
		m = map[string]*os.File{}
		s.named[monitor] = m
	}
	if old, ok := m[name]; ok {
		old.Close()
	} else if len(m) >= MaxNamedFDs {
		return qmp.Errorf("Too many named file descriptors on this monitor (godm keeps at most %d): closefd some first", MaxNamedFDs)
	}
	m[name] = f
	return nil
}

// CloseFD is closefd.
func (s *FDSets) CloseFD(monitor, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.named[monitor][name]
	if !ok {
		return qmp.Errorf("File descriptor named '%s' not found", name)
	}
	f.Close()
	delete(s.named[monitor], name)
	return nil
}

// Close closes every descriptor held.
func (s *FDSets) Close() {
	s.ClientsGone()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.named {
		for _, f := range m {
			f.Close()
		}
	}
	s.named = map[string]map[string]*os.File{}
}

// fdCommands are add-fd, remove-fd, query-fdsets, getfd and closefd.
func (s *State) fdCommands(cmds map[string]qmp.Handler) {
	const noFD = "No file descriptor supplied via SCM_RIGHTS" // QEMU 7.2
	cmds["add-fd"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		id, err := a.OptInt("fdset-id", -1, -1<<63, 1<<63-1)
		if err != nil {
			return nil, err
		}
		var opaque *string
		if a.Has("opaque") {
			o, err := a.String("opaque")
			if err != nil {
				return nil, err
			}
			opaque = &o
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		f := r.TakeFD()
		if f == nil {
			return nil, qmp.Errorf(noFD)
		}
		if a.Has("fdset-id") && id < 0 {
			f.Close()
			return nil, qmp.Errorf("Parameter 'fdset-id' expects a non-negative value")
		}
		set, fd, err := s.fds.Add(f, id, opaque)
		if err != nil {
			f.Close()
			return nil, err
		}
		return map[string]any{"fdset-id": set, "fd": fd}, nil
	}
	cmds["remove-fd"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		id, err := a.Int("fdset-id", -1<<63, 1<<63-1)
		if err != nil {
			return nil, err
		}
		fd, err := a.OptInt("fd", -1, -1<<63, 1<<63-1)
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		if a.Has("fd") && fd < 0 {
			return nil, qmp.Errorf("File descriptor named 'fdset-id:%d, fd:%d' not found", id, fd)
		}
		return nil, s.fds.Remove(id, fd)
	}
	cmds["query-fdsets"] = func(r *qmp.Request) (any, error) {
		if err := noArgs(r); err != nil {
			return nil, err
		}
		return s.fds.Query(), nil
	}
	cmds["getfd"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		name, err := a.String("fdname")
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		f := r.TakeFD()
		if f == nil {
			return nil, qmp.Errorf(noFD)
		}
		if err := s.fds.GetFD(r.Monitor, name, f); err != nil {
			f.Close()
			return nil, err
		}
		return nil, nil
	}
	cmds["closefd"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		name, err := a.String("fdname")
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		return nil, s.fds.CloseFD(r.Monitor, name)
	}
}
