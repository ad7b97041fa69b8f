package qmp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Version is the QEMU version the greeting announces. libxl gates features
// on it (libxl_qmp.c qmp_ev_qemu_compare_version): "live" on
// xen-save-devices-state from 2.11, "id" on blockdev-change-medium from 2.8,
// query-cpus-fast from 2.12, and from 9.1 "-incoming file:" instead of
// "fd:" for restore.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

// DefaultVersion is QEMU 7.2.0, the qemu-xen of Debian 12 (whose Xen 4.17
// is the reference toolstack): above every libxl gate that enables a
// feature godm's QMP answers (2.8, 2.11, 2.12), below 9.1 so that libxl
// keeps the "-incoming fd:N" restore path, and the version whose QAPI
// schema the command table is checked against.
var DefaultVersion = Version{Major: 7, Minor: 2, Micro: 0, Package: "godm"}

// Handler runs one command. The result is marshalled with encoding/json
// (nil becomes {}, QEMU's reply for commands without a return value; a
// command returning a list must return a non-nil empty slice, not nil). A
// *Error chooses the error class; any other error is a GenericError.
type Handler func(r *Request) (any, error)

// Request is one command being run.
type Request struct {
	Command string
	Args    map[string]any // never nil; numbers are json.Number
	Monitor string         // the name the monitor was served under

	c     *client
	after []func()
}

// TakeFD returns the oldest file descriptor the client passed (SCM_RIGHTS)
// and not yet taken, or nil: libxl sends the fd of add-fd with the first
// byte of the command. The caller owns the file. As in QEMU, descriptors
// received with a later message replace those not taken, and those left
// when the client disconnects are closed.
func (r *Request) TakeFD() *os.File {
	if r.c == nil || len(r.c.fds) == 0 {
		return nil
	}
	f := r.c.fds[0]
	r.c.fds = r.c.fds[1:]
	return f
}

// AfterReply arranges for fn to run, on a goroutine of its own, once the
// reply has been written to the client (or the client is gone): "quit"
// replies, then ends the process. fn may call Server.Close.
func (r *Request) AfterReply(fn func()) { r.after = append(r.after, fn) }

func runAfter(fns []func()) {
	for _, fn := range fns {
		go fn()
	}
}

// Config configures a Server. Zero fields take the defaults.
type Config struct {
	Version  Version            // DefaultVersion if zero
	Commands map[string]Handler // must not contain qmp_capabilities, which the server answers
	Log      *slog.Logger       // nil: discard

	MaxMessage int              // bytes of one incoming message; default 1 MiB
	MaxDepth   int              // nesting of one incoming message; default 1024 (QEMU's MAX_NESTING)
	MaxClients int              // clients connected at once, all monitors together; default 32
	QueueLen   int              // replies and events waiting for a slow client; default 256
	MaxFDs     int              // descriptors accepted with one message; default 4
	Now        func() time.Time // event timestamps; default time.Now

	// OnDisconnect, if set, is called (on the client's goroutine) when a
	// client goes away, with the number of clients still connected on
	// all monitors: QEMU closes the unused fds of fdsets once no
	// monitor client is left (monitor/fds.c monitor_fdsets_cleanup).
	OnDisconnect func(monitor string, remaining int)
}

// Server is a QMP server with one or more monitors.
type Server struct {
	cfg      Config
	greeting []byte
	log      *slog.Logger

	cmdMu sync.Mutex // held while a handler runs

	mu        sync.Mutex
	closed    bool
	listeners map[*net.UnixListener]struct{}
	clients   map[*client]struct{}
	done      chan struct{}
	wg        sync.WaitGroup
}

// NewServer returns a server with the given configuration. It serves
// nothing until Serve is called.
func NewServer(cfg Config) (*Server, error) {
	if _, ok := cfg.Commands["qmp_capabilities"]; ok {
		return nil, errors.New("qmp: qmp_capabilities is answered by the server, not by a handler")
	}
	if cfg.Version == (Version{}) {
		cfg.Version = DefaultVersion
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 1 << 20
	}
	if cfg.MaxDepth <= 0 {
		cfg.MaxDepth = 1024
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 32
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 256
	}
	if cfg.MaxFDs <= 0 {
		cfg.MaxFDs = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g, err := encode(map[string]any{"QMP": map[string]any{
		"version": map[string]any{
			"qemu":    map[string]int{"major": cfg.Version.Major, "minor": cfg.Version.Minor, "micro": cfg.Version.Micro},
			"package": cfg.Version.Package,
		},
		"capabilities": []string{},
	}})
	if err != nil {
		return nil, err
	}
	return &Server{
		cfg: cfg, greeting: g, log: log,
		listeners: make(map[*net.UnixListener]struct{}),
		clients:   make(map[*client]struct{}),
		done:      make(chan struct{}),
	}, nil
}

// Serve serves the monitor named monitor on ln (see package unixsock for
// opening it) until Close. It returns at once.
func (s *Server) Serve(monitor string, ln *net.UnixListener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("qmp: server closed")
	}
	s.listeners[ln] = struct{}{}
	s.wg.Add(1)
	go s.accept(monitor, ln)
	return nil
}

func (s *Server) accept(monitor string, ln *net.UnixListener) {
	defer s.wg.Done()
	for {
		conn, err := ln.AcceptUnix()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient (EMFILE, ECONNABORTED): back off, then retry.
			s.log.Warn("qmp: accept failed", "monitor", monitor, "err", err)
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return
			}
			continue
		}
		s.start(monitor, conn)
	}
}

// client is one connection.
type client struct {
	s          *Server
	monitor    string
	conn       *net.UnixConn
	out        chan outMsg
	done       chan struct{}
	closeOnce  sync.Once
	negotiated atomic.Bool
	fds        []*os.File // touched only by the reader goroutine
}

type outMsg struct {
	data  []byte
	after []func()
	last  bool // close the connection once written
}

func (s *Server) start(monitor string, conn *net.UnixConn) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	if len(s.clients) >= s.cfg.MaxClients {
		s.mu.Unlock()
		s.log.Warn("qmp: too many clients, connection refused", "monitor", monitor, "max", s.cfg.MaxClients)
		conn.Close()
		return
	}
	c := &client{
		s: s, monitor: monitor, conn: conn,
		out:  make(chan outMsg, s.cfg.QueueLen),
		done: make(chan struct{}),
	}
	s.clients[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	c.out <- outMsg{data: s.greeting} // the queue is empty: never blocks
	go c.writer()
	go c.reader()
}

func (c *client) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.conn.Close()
		c.s.mu.Lock()
		delete(c.s.clients, c)
		n := len(c.s.clients)
		c.s.mu.Unlock()
		if f := c.s.cfg.OnDisconnect; f != nil {
			f(c.monitor, n)
		}
	})
}

func (c *client) writer() {
	defer c.s.wg.Done()
	for {
		select {
		case m := <-c.out:
			if m.last {
				// Nobody reads this client any more: do not wait on it forever.
				c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			}
			_, err := c.conn.Write(m.data)
			runAfter(m.after)
			if err != nil || m.last {
				c.close()
				return
			}
		case <-c.done:
			// Run what was promised after replies that will never be written.
			for {
				select {
				case m := <-c.out:
					runAfter(m.after)
				default:
					return
				}
			}
		}
	}
}

// send queues a reply, waiting while the queue is full (the client is
// slow to read; only its own reader waits).
func (c *client) send(m outMsg) {
	select {
	case c.out <- m:
	case <-c.done:
		runAfter(m.after)
	}
}

func (c *client) reader() {
	defer c.s.wg.Done()
	closeConn := true // false once the writer is to close it, after a last message
	defer func() {
		for _, f := range c.fds {
			f.Close()
		}
		c.fds = nil
		if closeConn {
			c.close()
		}
	}()
	f := framer{max: c.s.cfg.MaxMessage, maxDepth: c.s.cfg.MaxDepth}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(c.s.cfg.MaxFDs*4))
	emit := func(frame []byte, err error) {
		if err != nil {
			c.replyError(nil, false, &Error{Class: ClassGenericError, Desc: err.Error()})
			return
		}
		c.handle(frame)
	}
	for {
		n, oobn, flags, _, err := c.conn.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			c.takeRights(oob[:oobn], flags)
		}
		if n > 0 {
			if ferr := f.feed(buf[:n], emit); ferr != nil {
				c.s.log.Warn("qmp: message too large, client disconnected", "monitor", c.monitor, "max", c.s.cfg.MaxMessage)
				msg, _ := encode(map[string]any{"error": &Error{Class: ClassGenericError,
					Desc: fmt.Sprintf("JSON message too large (over %d bytes), closing the connection", c.s.cfg.MaxMessage)}})
				c.send(outMsg{data: msg, last: true})
				closeConn = false
				return
			}
		}
		if err != nil {
			if err == io.EOF {
				f.flush(emit)
			}
			return
		}
	}
}

// takeRights keeps the descriptors passed with a message, replacing those
// not taken yet (QEMU char-socket.c tcp_chr_recv does the same).
func (c *client) takeRights(oob []byte, flags int) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	var got []int
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err == nil {
			got = append(got, fds...)
		}
	}
	if len(got) == 0 {
		return
	}
	for _, f := range c.fds {
		f.Close()
	}
	c.fds = c.fds[:0]
	for _, fd := range got {
		c.fds = append(c.fds, os.NewFile(uintptr(fd), "qmp-fd"))
	}
	if flags&unix.MSG_CTRUNC != 0 {
		c.s.log.Warn("qmp: client passed more descriptors than accepted; the rest were dropped", "monitor", c.monitor, "max", c.s.cfg.MaxFDs)
	}
}

func (c *client) replyError(id any, hasID bool, e *Error) {
	c.reply(id, hasID, map[string]any{"error": e}, nil)
}

func (c *client) reply(id any, hasID bool, body map[string]any, after []func()) {
	if hasID {
		body["id"] = id
	}
	data, err := encode(body)
	if err != nil {
		// Only a handler's result can fail to marshal.
		c.s.log.Error("qmp: reply does not marshal", "monitor", c.monitor, "err", err)
		body = map[string]any{"error": Errorf("internal error: the reply cannot be encoded: %v", err)}
		if hasID {
			body["id"] = id
		}
		data, _ = encode(body)
	}
	c.send(outMsg{data: data, after: after})
}

// MarshalJSON gives the wire form {"class": ..., "desc": ...}.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	}{e.Class, e.Desc})
}

// handle answers one framed message (QEMU qapi/qmp-dispatch.c
// qmp_dispatch_check_obj and qmp_dispatch; monitor/qmp.c for negotiation).
func (c *client) handle(frame []byte) {
	v, err := decode(frame)
	if err != nil {
		c.replyError(nil, false, &Error{Class: ClassGenericError, Desc: err.Error()})
		return
	}
	req, ok := v.(map[string]any)
	if !ok {
		c.replyError(nil, false, Errorf("QMP input must be a JSON object"))
		return
	}
	id, hasID := req["id"]
	keys := make([]string, 0, len(req))
	for k := range req {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cmd string
	args := map[string]any{}
	haveExec := false
	for _, k := range keys {
		switch k {
		case "execute":
			s, ok := req[k].(string)
			if !ok {
				c.replyError(id, hasID, Errorf("QMP input member 'execute' must be a string"))
				return
			}
			cmd, haveExec = s, true
		case "arguments":
			a, ok := req[k].(map[string]any)
			if !ok {
				c.replyError(id, hasID, Errorf("QMP input member 'arguments' must be an object"))
				return
			}
			args = a
		case "id":
		default:
			// "exec-oob" too: out-of-band execution is not offered.
			c.replyError(id, hasID, Errorf("QMP input member '%s' is unexpected", k))
			return
		}
	}
	if !haveExec {
		c.replyError(id, hasID, Errorf("QMP input lacks member 'execute'"))
		return
	}
	if cmd == "qmp_capabilities" {
		if c.negotiated.Load() {
			c.replyError(id, hasID, NewError(ClassCommandNotFound, "Capabilities negotiation is already complete, command ignored"))
			return
		}
		if e := capabilities(args); e != nil {
			c.replyError(id, hasID, e)
			return
		}
		c.negotiated.Store(true)
		c.reply(id, hasID, map[string]any{"return": struct{}{}}, nil)
		return
	}
	if !c.negotiated.Load() {
		c.replyError(id, hasID, NewError(ClassCommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'"))
		return
	}
	h, ok := c.s.cfg.Commands[cmd]
	if !ok {
		c.replyError(id, hasID, NewError(ClassCommandNotFound, "The command %s has not been found", cmd))
		return
	}
	r := &Request{Command: cmd, Args: args, Monitor: c.monitor, c: c}
	res, herr := c.s.run(h, r)
	if herr != nil {
		var e *Error
		if !errors.As(herr, &e) {
			e = Errorf("%s", herr.Error())
		}
		c.reply(id, hasID, map[string]any{"error": e}, r.after)
		return
	}
	if res == nil {
		res = struct{}{}
	}
	c.reply(id, hasID, map[string]any{"return": res}, r.after)
}

// capabilities checks qmp_capabilities' arguments: "enable" may only list
// capabilities the greeting offered, and it offers none.
func capabilities(args map[string]any) *Error {
	for k, v := range args {
		if k != "enable" {
			return Errorf("Parameter '%s' is unexpected", k)
		}
		l, ok := v.([]any)
		if !ok {
			return Errorf("Invalid parameter type for 'enable', expected: array")
		}
		for _, cap := range l {
			name, ok := cap.(string)
			if !ok {
				return Errorf("Invalid parameter type for 'enable[0]', expected: string")
			}
			return Errorf("Capability '%s' not available", name)
		}
	}
	return nil
}

// run calls a handler under the command lock. A panicking handler is a
// bug; it is logged with its stack and answered with an error rather than
// taking the domain down.
func (s *Server) run(h Handler, r *Request) (res any, err error) {
	s.cmdMu.Lock()
	defer s.cmdMu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("qmp: command handler panicked", "command", r.Command, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, Errorf("internal error while running %s", r.Command)
		}
	}()
	return h(r)
}

// Emit sends an event to every client of every monitor that has completed
// capabilities negotiation. data may be nil (then the event has no "data"
// member). It never blocks: a client whose queue is full is disconnected.
func (s *Server) Emit(event string, data any) error {
	now := s.cfg.Now()
	msg := map[string]any{
		"timestamp": map[string]int64{"seconds": now.Unix(), "microseconds": int64(now.Nanosecond() / 1000)},
		"event":     event,
	}
	if data != nil {
		msg["data"] = data
	}
	b, err := encode(msg)
	if err != nil {
		return fmt.Errorf("qmp: event %s: %w", event, err)
	}
	s.mu.Lock()
	var slow []*client
	for c := range s.clients {
		if !c.negotiated.Load() {
			continue
		}
		select {
		case c.out <- outMsg{data: b}:
		default:
			slow = append(slow, c)
		}
	}
	s.mu.Unlock()
	for _, c := range slow {
		s.log.Warn("qmp: client is not reading its events, disconnected", "monitor", c.monitor)
		c.close()
	}
	return nil
}

// Clients returns how many clients are connected.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Close stops every monitor (removing the socket files it created) and
// disconnects every client, then waits for the server's goroutines. A
// handler still running finishes first.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var errs []error
	for ln := range s.listeners {
		if err := ln.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	clients := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	for _, c := range clients {
		c.close()
	}
	s.wg.Wait()
	return errors.Join(errs...)
}
