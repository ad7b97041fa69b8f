package xenstored

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"godm/hyp"
	"godm/hyp/xenstore"
)

// Config configures a Server.
type Config struct {
	// Trace, when set, sees every message: each request as received
	// (in == true) and each reply and watch event as queued (in ==
	// false), with its header. It is called with the server lock held,
	// in protocol order, and must not call back into the Server. The
	// slice is only valid during the call.
	Trace func(dom hyp.DomID, in bool, msg []byte)
}

// Server is a simulated xenstored. The zero value is not usable; use New.
type Server struct {
	cfg Config

	mu         sync.Mutex
	live       store                     // +checklocks:mu
	gen        uint64                    // +checklocks:mu
	txs        map[uint32]*tx            // +checklocks:mu
	nextTx     uint32                    // +checklocks:mu
	conns      map[*conn]struct{}        // +checklocks:mu
	listeners  map[net.Listener]struct{} // +checklocks:mu
	introduced map[hyp.DomID]bool        // +checklocks:mu
	closed     bool                      // +checklocks:mu

	wg sync.WaitGroup // every goroutine the Server started
}

// New returns a Server holding the tree xenstored starts with plus the
// dom0 home: "/", "/local", "/local/domain", "/local/domain/0" and
// "/tool", owned by dom0 with no access for others ("n0").
func New(cfg Config) *Server {
	s := &Server{
		cfg:        cfg,
		live:       make(store),
		txs:        make(map[uint32]*tx),
		conns:      make(map[*conn]struct{}),
		listeners:  make(map[net.Listener]struct{}),
		introduced: map[hyp.DomID]bool{0: true},
	}
	s.live["/"] = &node{perms: []xenstore.Perm{{Dom: 0, Access: xenstore.AccessNone}}}
	v := &view{s: s, st: s.live}
	for _, p := range []string{"/local/domain/0", "/tool"} {
		v.create(0, p, nil)
	}
	return s
}

// Listen creates a Unix socket at path (removing a stale socket file
// first) and serves it in the background as dom0 connections, like
// xenstored's socket. Close stops it and removes the socket.
func (s *Server) Listen(path string) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("xenstored: listen: %w", err)
	}
	if err := s.addListener(l); err != nil {
		return err
	}
	go s.serve(l, 0)
	return nil
}

// Serve accepts connections on l and serves them as dom0 until l fails or
// the Server is closed; it returns nil after Close. The Server closes l,
// and Close waits for Serve to return.
func (s *Server) Serve(l net.Listener) error {
	return s.ServeAs(l, 0)
}

// ServeAs is Serve with the connections associated with domain dom.
func (s *Server) ServeAs(l net.Listener, dom hyp.DomID) error {
	if err := s.addListener(l); err != nil {
		return err
	}
	return s.serve(l, dom)
}

func (s *Server) addListener(l net.Listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		l.Close()
		return hyp.ErrClosed
	}
	s.listeners[l] = struct{}{}
	s.wg.Add(1) // done when serve returns
	return nil
}

func (s *Server) serve(l net.Listener, dom hyp.DomID) error {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.listeners, l)
			s.mu.Unlock()
			l.Close()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("xenstored: accept: %w", err)
		}
		if err := s.Attach(c, dom); err != nil {
			return nil
		}
	}
}

// Attach serves rwc (a connected stream, e.g. one end of a socketpair) as
// a connection from domain dom, in the background. The Server owns rwc and
// closes it when the peer goes away or on Close; closing rwc must unblock
// its Read.
func (s *Server) Attach(rwc io.ReadWriteCloser, dom hyp.DomID) error {
	c := &conn{s: s, dom: dom, rwc: rwc, notify: make(chan struct{}, 1), quit: make(chan struct{})}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		rwc.Close()
		return hyp.ErrClosed
	}
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	go c.readLoop()
	go c.writeLoop()
	return nil
}

// Pipe returns the client end of a new in-process connection served as
// domain dom (a Unix socketpair, so deadlines and half-close behave as
// on xenstored's socket).
func (s *Server) Pipe(dom hyp.DomID) (net.Conn, error) {
	a, b, err := socketpair()
	if err != nil {
		return nil, err
	}
	if err := s.Attach(b, dom); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Close stops accepting, closes every connection (aborting their
// transactions) and waits for all the Server's goroutines. It is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ls := make([]net.Listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, l)
	}
	cs := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	for _, c := range cs {
		c.close()
	}
	s.wg.Wait()
	return nil
}

// conn is one client connection.
type conn struct {
	s   *Server
	dom hyp.DomID
	rwc io.ReadWriteCloser

	watches []*watch // +checklocks:s.mu

	outMu  sync.Mutex
	out    [][]byte // +checklocks:outMu
	notify chan struct{}
	quit   chan struct{}
	once   sync.Once
}

type watch struct {
	path     string // canonical, or the special "@..." name
	token    string
	relative string // domain path prefix to strip from events, "" if absolute
}

func (c *conn) close() {
	c.once.Do(func() {
		close(c.quit)
		c.rwc.Close()
	})
}

// queue appends a message to the connection's output; it never blocks.
//
// +checklocks:c.s.mu
func (c *conn) queue(h xenstore.Header, payload []byte) {
	h.Len = uint32(len(payload))
	msg := append(h.Append(make([]byte, 0, xenstore.HeaderSize+len(payload))), payload...)
	if c.s.cfg.Trace != nil {
		c.s.cfg.Trace(c.dom, false, msg)
	}
	c.outMu.Lock()
	c.out = append(c.out, msg)
	c.outMu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	for {
		c.outMu.Lock()
		q := c.out
		c.out = nil
		c.outMu.Unlock()
		for _, m := range q {
			if _, err := c.rwc.Write(m); err != nil {
				c.close()
				return
			}
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-c.notify:
		case <-c.quit:
			return
		}
	}
}

func (c *conn) readLoop() {
	defer c.s.wg.Done()
	defer c.drop()
	r := bufio.NewReaderSize(c.rwc, xenstore.HeaderSize+xenstore.PayloadMax)
	var raw []byte
	for {
		// An oversized length or a truncated message is a protocol
		// violation: xenstored drops such a client.
		h, payload, err := xenstore.ReadMsg(r)
		if err != nil {
			return
		}
		c.s.mu.Lock()
		if c.s.cfg.Trace != nil {
			raw = append(h.Append(raw[:0]), payload...)
			c.s.cfg.Trace(c.dom, true, raw)
		}
		c.s.handle(c, h, payload)
		c.s.mu.Unlock()
	}
}

// drop forgets the connection: its watches and transactions go.
func (c *conn) drop() {
	c.close()
	c.s.mu.Lock()
	delete(c.s.conns, c)
	for id, t := range c.s.txs {
		if t.owner == c {
			delete(c.s.txs, id)
		}
	}
	c.watches = nil
	c.s.mu.Unlock()
}
