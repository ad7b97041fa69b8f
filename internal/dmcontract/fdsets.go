package dmcontract

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"godm/internal/qmp"
)

// fdset is one of QMP's file descriptor sets (QEMU monitor/fds.c): the
// descriptors a client passed with add-fd, which "/dev/fdset/N" file
// names stand for. libxl's cd-insert passes the new image this way.
type fdset struct {
	id  int64
	fds []fdEntry
}

type fdEntry struct {
	f      *os.File
	opaque string
}

// maxFDs bounds the descriptors a client may park in fdsets.
const maxFDs = 64

func (s *State) fdsetCommands(cmds map[string]qmp.Handler) {
	cmds["add-fd"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		id, err := a.OptInt("fdset-id", -1, 0, 1<<31-1)
		if err != nil {
			return nil, err
		}
		opaque, err := a.OptString("opaque", "")
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		f := r.TakeFD()
		if f == nil {
			return nil, qmp.Errorf("No file descriptor supplied via SCM_RIGHTS")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, set := range s.fdsets {
			n += len(set.fds)
		}
		if n >= maxFDs {
			f.Close()
			return nil, qmp.Errorf("too many file descriptors in fdsets (%d)", maxFDs)
		}
		var set *fdset
		if id >= 0 {
			for _, x := range s.fdsets {
				if x.id == id {
					set = x
				}
			}
		} else {
			// QEMU: the lowest free id.
			for id = 0; ; id++ {
				if s.fdsetByID(id) == nil {
					break
				}
			}
		}
		if set == nil {
			set = &fdset{id: id}
			s.fdsets = append(s.fdsets, set)
			sort.Slice(s.fdsets, func(i, j int) bool { return s.fdsets[i].id < s.fdsets[j].id })
		}
		set.fds = append(set.fds, fdEntry{f: f, opaque: opaque})
		return map[string]any{"fdset-id": set.id, "fd": int(f.Fd())}, nil
	}
	cmds["remove-fd"] = func(r *qmp.Request) (any, error) {
		a := qmp.ArgsOf(r.Args)
		id, err := a.Int("fdset-id", 0, 1<<31-1)
		if err != nil {
			return nil, err
		}
		fd, err := a.OptInt("fd", -1, 0, 1<<31-1)
		if err != nil {
			return nil, err
		}
		if err := a.Check(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		set := s.fdsetByID(id)
		name := fmt.Sprintf("fdset-id:%d", id)
		if fd >= 0 {
			name += fmt.Sprintf(", fd:%d", fd)
		}
		if set == nil {
			return nil, qmp.Errorf("File descriptor named '%s' not found", name)
		}
		kept := set.fds[:0]
		found := false
		for _, e := range set.fds {
			if fd < 0 || int64(e.f.Fd()) == fd {
				e.f.Close()
				found = true
				continue
			}
			kept = append(kept, e)
		}
		set.fds = kept
		if !found {
			return nil, qmp.Errorf("File descriptor named '%s' not found", name)
		}
		if len(set.fds) == 0 {
			for i, x := range s.fdsets {
				if x == set {
					s.fdsets = append(s.fdsets[:i], s.fdsets[i+1:]...)
					break
				}
			}
		}
		return nil, nil
	}
	cmds["query-fdsets"] = func(r *qmp.Request) (any, error) {
		if err := noArgs(r); err != nil {
			return nil, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		out := make([]map[string]any, 0, len(s.fdsets))
		for _, set := range s.fdsets {
			fds := make([]map[string]any, 0, len(set.fds))
			for _, e := range set.fds {
				m := map[string]any{"fd": int(e.f.Fd())}
				if e.opaque != "" {
					m["opaque"] = e.opaque
				}
				fds = append(fds, m)
			}
			out = append(out, map[string]any{"fdset-id": set.id, "fds": fds})
		}
		return out, nil
	}
}

func (s *State) fdsetByID(id int64) *fdset {
	for _, x := range s.fdsets {
		if x.id == id {
			return x
		}
	}
	return nil
}

// resolveFdset turns "/dev/fdset/N" into a path godm can open: the first
// descriptor of set N through /proc/self/fd (a new open of the same
// file; it needs /proc, which a dm_restrict chroot lacks). Other names
// are returned as they are.
func (s *State) resolveFdset(name string) (string, error) {
	rest, ok := strings.CutPrefix(name, "/dev/fdset/")
	if !ok {
		return name, nil
	}
	id, err := strconv.ParseInt(rest, 10, 32)
	if err != nil || id < 0 {
		return "", qmp.Errorf("'%s' is not a file descriptor set", name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	set := s.fdsetByID(id)
	if set == nil || len(set.fds) == 0 {
		return "", qmp.Errorf("No file descriptor set %d (add-fd first)", id)
	}
	return fmt.Sprintf("/proc/self/fd/%d", set.fds[0].f.Fd()), nil
}

// closeFdsets closes every descriptor (the monitor's end).
func (s *State) closeFdsets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, set := range s.fdsets {
		for _, e := range set.fds {
			e.f.Close()
		}
	}
	s.fdsets = nil
}

// Close releases what the monitors left: the descriptors in fdsets.
func (s *State) Close() { s.closeFdsets() }
