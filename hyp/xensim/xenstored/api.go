package xenstored

import (
	"fmt"
	"net"
	"os"

	"godm/hyp"
	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

// The direct API below acts on the live store as a privileged dom0
// caller, exactly like the matching request from a dom0 connection
// (watches fire), for tests that set up or inspect the tree without a
// client. Errors are unix.Errno values wrapped with the path.

func (s *Server) direct(typ xenstore.MsgType, path string, extra []byte) ([]byte, error) {
	payload := append(append([]byte(path), 0), extra...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, hyp.ErrClosed
	}
	v := &view{s: s, st: s.live}
	out, errno := s.nodeOp(v, 0, typ, payload)
	if errno != 0 {
		return nil, fmt.Errorf("xenstored %v %q: %w", typ, path, errno)
	}
	s.fireAll(v.fires)
	return out, nil
}

// Read returns the value at path.
func (s *Server) Read(path string) ([]byte, error) {
	return s.direct(xenstore.MsgRead, path, nil)
}

// Write sets the value at path, creating missing nodes.
func (s *Server) Write(path string, value []byte) error {
	_, err := s.direct(xenstore.MsgWrite, path, value)
	return err
}

// Mkdir creates path (and missing parents) with an empty value.
func (s *Server) Mkdir(path string) error {
	_, err := s.direct(xenstore.MsgMkdir, path, nil)
	return err
}

// Rm removes path and its subtree.
func (s *Server) Rm(path string) error {
	_, err := s.direct(xenstore.MsgRm, path, nil)
	return err
}

// Directory lists the children of path.
func (s *Server) Directory(path string) ([]string, error) {
	out, err := s.direct(xenstore.MsgDirectory, path, nil)
	if err != nil {
		return nil, err
	}
	return xenstore.SplitStrings(out)
}

// GetPerms returns the permissions of path.
func (s *Server) GetPerms(path string) ([]xenstore.Perm, error) {
	out, err := s.direct(xenstore.MsgGetPerms, path, nil)
	if err != nil {
		return nil, err
	}
	return xenstore.ParsePerms(out)
}

// SetPerms replaces the permissions of path.
func (s *Server) SetPerms(path string, perms []xenstore.Perm) error {
	_, err := s.direct(xenstore.MsgSetPerms, path, xenstore.AppendPerms(nil, perms))
	return err
}

// IntroduceDomain marks dom as introduced and fires @introduceDomain
// watches, as XS_INTRODUCE does. It does not create the domain's home
// (the toolstack writes that).
func (s *Server) IntroduceDomain(dom hyp.DomID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return hyp.ErrClosed
	}
	s.introduceLocked(dom)
	return nil
}

// ReleaseDomain forgets dom and fires @releaseDomain watches, as
// XS_RELEASE does.
func (s *Server) ReleaseDomain(dom hyp.DomID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return hyp.ErrClosed
	}
	if errno := s.releaseLocked(dom); errno != 0 {
		return fmt.Errorf("xenstored release %v: %w", dom, errno)
	}
	return nil
}

// socketpair returns both ends of a connected Unix stream socketpair.
func socketpair() (net.Conn, net.Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("xenstored: socketpair: %w", err)
	}
	a, err := fdConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	b, err := fdConn(fds[1])
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, b, nil
}

// fdConn turns a socket fd into a net.Conn, taking ownership of fd.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "xenstored-socketpair")
	defer f.Close() // FileConn dups the fd
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("xenstored: socketpair conn: %w", err)
	}
	return c, nil
}
