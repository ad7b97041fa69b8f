package vnc

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"godm/display"
)

// Auth is a security type (RFC 6143 §7.2).
type Auth uint8

// The security types godm offers.
const (
	AuthNone Auth = 1
	AuthVNC  Auth = 2
)

// Limits and defaults.
const (
	MaxCutText       = 1 << 20 // longest ClientCutText skipped before the client is dropped
	MaxClients       = 16
	HandshakeTimeout = 30 * time.Second
	WriteTimeout     = 60 * time.Second
	// QEMU ui/vnc.h: VNC_REFRESH_INTERVAL_BASE 30 ms, _INC 50 ms, _MAX 3000 ms.
	refreshBase = 30 * time.Millisecond
	refreshInc  = 50 * time.Millisecond
	refreshMax  = 3000 * time.Millisecond
)

// Config is a server's configuration.
type Config struct {
	Source      display.Source
	Input       display.InputSink // nil: input is dropped
	Keymap      *display.Keymap   // nil: en-us
	Name        string            // desktop name sent in ServerInit
	Auth        Auth              // AuthNone (default) or AuthVNC
	Password    string            // initial password for AuthVNC
	IdleTimeout time.Duration     // drop a client silent this long; 0: never
	Log         *slog.Logger
}

// Server serves one Source to several RFB clients.
type Server struct {
	cfg    Config
	keymap *display.Keymap
	log    *slog.Logger

	mu       sync.Mutex
	password string
	clients  map[*conn]struct{}
	lns      []net.Listener
	closed   bool
	nextID   uint64

	rectsRaw, rectsZRLE, updates atomic.Uint64
	extKeyAcks, extKeys          atomic.Uint64

	// serial is the source mode the pump last saw (guarded by mu).
	serial uint64

	kick chan struct{} // wakes the pump
	done chan struct{}
	wg   sync.WaitGroup
}

// New returns a server; call Serve with a listener.
func New(cfg Config) (*Server, error) {
	if cfg.Source == nil {
		return nil, errors.New("vnc: no framebuffer source")
	}
	if cfg.Auth == 0 {
		cfg.Auth = AuthNone
	}
	if cfg.Auth != AuthNone && cfg.Auth != AuthVNC {
		return nil, fmt.Errorf("vnc: unknown security type %d", cfg.Auth)
	}
	if cfg.Name == "" {
		cfg.Name = "godm"
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	km := cfg.Keymap
	if km == nil {
		km, _ = display.LookupKeymap("")
	}
	s := &Server{cfg: cfg, keymap: km, log: cfg.Log, password: truncPassword(cfg.Password),
		clients: map[*conn]struct{}{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	s.wg.Add(1)
	go s.pump()
	return s, nil
}

// truncPassword keeps VNC Authentication's eight significant bytes.
func truncPassword(p string) string {
	if len(p) > 8 {
		return p[:8]
	}
	return p
}

// SetPassword changes the VNC password (QMP change-vnc-password); clients
// already connected stay. It is refused on a server without VNC
// Authentication, as QEMU does.
func (s *Server) SetPassword(p string) error {
	if s.cfg.Auth != AuthVNC {
		return errors.New("could not set password: the VNC server was started without password=on")
	}
	s.mu.Lock()
	s.password = truncPassword(p)
	s.mu.Unlock()
	return nil
}

// Refresh asks for an immediate look at the source (a display adapter
// calls it after a mode set; tests after drawing).
func (s *Server) Refresh() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Serve accepts clients on ln until Close (then it returns nil) or an
// accept error.
func (s *Server) Serve(ln net.Listener) error {
	if !s.addListener(ln) {
		return nil
	}
	return s.accept(ln)
}

// Go serves ln on a goroutine of its own, the listener registered before
// it returns (so that Info, QMP's query-vnc, names it at once).
func (s *Server) Go(ln net.Listener) {
	if s.addListener(ln) {
		go s.accept(ln)
	}
}

// addListener records ln (false, ln closed: the server is closed).
func (s *Server) addListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		ln.Close()
		return false
	}
	s.lns = append(s.lns, ln)
	return true
}

func (s *Server) accept(ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closed || len(s.clients) >= MaxClients {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		if len(s.clients) == 0 {
			// What changed while nobody watched is of no use to a client
			// that starts with a full picture: drop it now, before the
			// client's first update, so the pump does not send it again.
			var discard display.Tiles
			s.collectLocked(&discard)
		}
		s.nextID++
		c := newConn(s, nc, s.nextID)
		s.clients[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.run()
		s.Refresh()
	}
}

// Close stops the listeners and disconnects every client; it waits for
// the server's goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for _, ln := range s.lns {
		ln.Close()
	}
	for c := range s.clients {
		c.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) remove(c *conn) {
	s.mu.Lock()
	delete(s.clients, c)
	s.mu.Unlock()
}

// pump collects the source's dirty tiles on the refresh timer and hands
// them to every client.
func (s *Server) pump() {
	defer s.wg.Done()
	interval := refreshBase
	t := time.NewTimer(interval)
	defer t.Stop()
	var tiles display.Tiles
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.kick:
			interval = refreshBase
		}
		s.mu.Lock()
		cs := make([]*conn, 0, len(s.clients))
		for c := range s.clients {
			cs = append(cs, c)
		}
		var m display.Mode
		if len(cs) > 0 {
			m = s.collectLocked(&tiles)
		}
		s.mu.Unlock()
		if len(cs) == 0 {
			// Nothing to do until a client arrives (Serve kicks).
			t.Stop()
			select {
			case <-s.done:
				return
			case <-s.kick:
			}
			interval = refreshBase
			t.Reset(interval)
			continue
		}
		if changed := !tiles.Empty(); changed {
			for _, c := range cs {
				c.addDirty(&tiles, m)
			}
			interval = refreshBase
		} else if interval += refreshInc; interval > refreshMax {
			interval = refreshMax
		}
		t.Reset(interval)
	}
}

// collectLocked takes the source's dirty tiles into t (all of them on a
// mode change) and returns the mode. s.mu is held.
func (s *Server) collectLocked(t *display.Tiles) display.Mode {
	m := s.cfg.Source.Mode()
	t.Reset(m.Width, m.Height)
	s.cfg.Source.CollectDirty(t)
	if m.Serial != s.serial {
		s.serial = m.Serial
		t.MarkAll()
	}
	return m
}

// Stats are the server's counters.
type Stats struct {
	Updates, RectsRaw, RectsZRLE uint64
	// ExtKeyAcks counts QEMU extended key event acknowledgements sent,
	// ExtKeys the extended key events received.
	ExtKeyAcks, ExtKeys uint64
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Updates: s.updates.Load(), RectsRaw: s.rectsRaw.Load(), RectsZRLE: s.rectsZRLE.Load(),
		ExtKeyAcks: s.extKeyAcks.Load(), ExtKeys: s.extKeys.Load()}
}

// ClientInfo describes a connected client (query-vnc's VncClientInfo).
type ClientInfo struct {
	Host, Service, Family string
}

// Info is the server's state for QMP query-vnc.
type Info struct {
	Enabled bool
	Host    string // listening address
	Service string // listening port
	Family  string // ipv4, ipv6
	Auth    string // none, vnc
	Clients []ClientInfo
}

// Info reports the first listener and the clients that finished their
// handshake.
func (s *Server) Info() Info {
	s.mu.Lock()
	defer s.mu.Unlock()
	inf := Info{Enabled: true, Auth: "none", Clients: []ClientInfo{}}
	if s.cfg.Auth == AuthVNC {
		inf.Auth = "vnc"
	}
	if len(s.lns) > 0 {
		inf.Host, inf.Service, inf.Family = addrInfo(s.lns[0].Addr())
	}
	for c := range s.clients {
		if c.ready {
			h, p, f := addrInfo(c.nc.RemoteAddr())
			inf.Clients = append(inf.Clients, ClientInfo{Host: h, Service: p, Family: f})
		}
	}
	return inf
}

func addrInfo(a net.Addr) (host, port, family string) {
	family = "unknown"
	if ta, ok := a.(*net.TCPAddr); ok {
		family = "ipv6"
		if ta.IP.To4() != nil {
			family = "ipv4"
		}
		return ta.IP.String(), strconv.Itoa(ta.Port), family
	}
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), "", family
	}
	return h, p, family
}

// QueryVNC is Info as QEMU 7.2's query-vnc returns it (qapi/ui.json
// VncInfo). A nil server is "-vnc none": only enabled=false.
func QueryVNC(s *Server) map[string]any {
	if s == nil {
		return map[string]any{"enabled": false}
	}
	inf := s.Info()
	clients := make([]any, 0, len(inf.Clients))
	for _, c := range inf.Clients {
		clients = append(clients, map[string]any{"host": c.Host, "service": c.Service,
			"family": c.Family, "websocket": false})
	}
	q := map[string]any{"enabled": true, "auth": inf.Auth, "clients": clients}
	if inf.Service != "" { // not before Serve has its listener
		q["host"], q["service"], q["family"] = inf.Host, inf.Service, inf.Family
	}
	return q
}

// conn is one client.
type conn struct {
	s   *Server
	nc  net.Conn
	id  uint64
	br  *bufio.Reader
	bw  *bufio.Writer
	log *slog.Logger

	mu        sync.Mutex
	ready     bool // ServerInit sent (guarded by s.mu for Info; set under both)
	format    display.PixelFormat
	zrle      bool
	deskSize  bool
	pending   bool         // a FramebufferUpdateRequest waits
	force     bool         // ... and one of them was non-incremental: answer even if empty
	req       display.Rect // union of the waiting requests
	dirty     display.Tiles
	serial    uint64 // mode the client's bitmap and size belong to
	w, h      int    // the client's idea of the framebuffer size
	resize    bool   // a DesktopSize rectangle is owed
	extKeyAck bool   // a QEMU extended key event pseudo-rectangle is owed
	closeOnce sync.Once

	wake chan struct{}
	done chan struct{}
}

func newConn(s *Server, nc net.Conn, id uint64) *conn {
	return &conn{s: s, nc: nc, id: id, br: bufio.NewReaderSize(nc, 4096), bw: bufio.NewWriterSize(nc, 64<<10),
		log:  s.log.With("vnc-client", nc.RemoteAddr().String()),
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) run() {
	defer c.s.wg.Done()
	defer c.s.remove(c)
	defer c.close()
	if err := c.handshake(); err != nil {
		c.log.Debug("vnc handshake failed", "err", err)
		return
	}
	c.s.wg.Add(1)
	go c.writer()
	if err := c.reader(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
		c.log.Info("vnc client dropped", "err", err)
	}
}

func (c *conn) flushDeadline() error {
	c.nc.SetWriteDeadline(time.Now().Add(WriteTimeout))
	return c.bw.Flush()
}

// handshake runs the protocol version, security and initialisation
// phases (RFC 6143 §7.1, §7.2, §7.3).
func (c *conn) handshake() error {
	c.nc.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer c.nc.SetDeadline(time.Time{})
	c.bw.WriteString("RFB 003.008\n")
	if err := c.flushDeadline(); err != nil {
		return err
	}
	var v [12]byte
	if _, err := io.ReadFull(c.br, v[:]); err != nil {
		return err
	}
	minor, err := parseVersion(v[:])
	if err != nil {
		return err
	}
	auth := c.s.cfg.Auth
	if minor >= 7 {
		// §7.1.2: number of types, the types; the client picks one.
		c.bw.Write([]byte{1, byte(auth)})
		if err := c.flushDeadline(); err != nil {
			return err
		}
		pick, err := c.br.ReadByte()
		if err != nil {
			return err
		}
		if Auth(pick) != auth {
			return c.fail(minor, "security type not offered")
		}
	} else {
		// 3.3: the server decides, as a 32-bit word.
		binary.Write(c.bw, binary.BigEndian, uint32(auth))
		if err := c.flushDeadline(); err != nil {
			return err
		}
	}
	if auth == AuthVNC {
		var challenge [16]byte
		rand.Read(challenge[:])
		c.bw.Write(challenge[:])
		if err := c.flushDeadline(); err != nil {
			return err
		}
		var resp [16]byte
		if _, err := io.ReadFull(c.br, resp[:]); err != nil {
			return err
		}
		c.s.mu.Lock()
		pw := c.s.password
		c.s.mu.Unlock()
		if !checkVNCAuth(pw, challenge[:], resp[:]) {
			return c.fail(minor, "authentication failed")
		}
	}
	// SecurityResult: always in 3.8; in 3.3 and 3.7 only after VNC
	// Authentication (§7.1.3).
	if auth == AuthVNC || minor == 8 {
		c.bw.Write([]byte{0, 0, 0, 0})
		if err := c.flushDeadline(); err != nil {
			return err
		}
	}
	shared, err := c.br.ReadByte() // ClientInit
	if err != nil {
		return err
	}
	if shared == 0 {
		c.s.dropOthers(c)
	}
	m := c.s.cfg.Source.Mode()
	c.mu.Lock()
	c.format = display.XRGB8888
	c.w, c.h = min(m.Width, 65535), min(m.Height, 65535)
	c.serial = m.Serial
	c.dirty.Reset(m.Width, m.Height)
	c.mu.Unlock()
	var si [24]byte
	binary.BigEndian.PutUint16(si[0:], uint16(c.w))
	binary.BigEndian.PutUint16(si[2:], uint16(c.h))
	putFormat(si[4:20], display.XRGB8888)
	binary.BigEndian.PutUint32(si[20:], uint32(len(c.s.cfg.Name)))
	c.bw.Write(si[:])
	c.bw.WriteString(c.s.cfg.Name)
	// Listed from here on (before the client can see ServerInit).
	c.s.mu.Lock()
	c.ready = true
	c.s.mu.Unlock()
	return c.flushDeadline()
}

// fail reports a security failure: in 3.8 SecurityResult 1 and a reason,
// in 3.3/3.7 SecurityResult 1 alone (RFC 6143 §7.1.3).
func (c *conn) fail(minor int, reason string) error {
	c.bw.Write([]byte{0, 0, 0, 1})
	if minor == 8 {
		binary.Write(c.bw, binary.BigEndian, uint32(len(reason)))
		c.bw.WriteString(reason)
	}
	c.flushDeadline()
	return errors.New(reason)
}

// parseVersion reads a ProtocolVersion message "RFB xxx.yyy\n" and
// returns the minor version to speak: 3.3, 3.7 or 3.8. Anything else from
// a 3.x client is treated as 3.3 (RFC 6143 §7.1.1); later majors get 3.8.
func parseVersion(v []byte) (int, error) {
	if string(v[:4]) != "RFB " || v[7] != '.' || v[11] != '\n' {
		return 0, fmt.Errorf("bad protocol version %q", v)
	}
	major, err1 := strconv.Atoi(string(v[4:7]))
	minor, err2 := strconv.Atoi(string(v[8:11]))
	if err1 != nil || err2 != nil || major < 3 {
		return 0, fmt.Errorf("bad protocol version %q", v)
	}
	switch {
	case major > 3 || minor >= 8:
		return 8, nil
	case minor == 7:
		return 7, nil
	default:
		return 3, nil
	}
}

// dropOthers ends every other client (ClientInit with shared-flag 0).
func (s *Server) dropOthers(keep *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.clients {
		if c != keep {
			c.close()
		}
	}
}

func putFormat(b []byte, f display.PixelFormat) {
	b[0], b[1] = f.BPP, f.Depth
	b[2], b[3] = boolByte(f.BigEndian), boolByte(f.TrueColour)
	binary.BigEndian.PutUint16(b[4:], f.RedMax)
	binary.BigEndian.PutUint16(b[6:], f.GreenMax)
	binary.BigEndian.PutUint16(b[8:], f.BlueMax)
	b[10], b[11], b[12] = f.RedShift, f.GreenShift, f.BlueShift
}

func getFormat(b []byte) display.PixelFormat {
	return display.PixelFormat{BPP: b[0], Depth: b[1], BigEndian: b[2] != 0, TrueColour: b[3] != 0,
		RedMax: binary.BigEndian.Uint16(b[4:]), GreenMax: binary.BigEndian.Uint16(b[6:]),
		BlueMax: binary.BigEndian.Uint16(b[8:]), RedShift: b[10], GreenShift: b[11], BlueShift: b[12]}
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// Encodings (RFC 6143 §7.7, §7.8; -258 from the RFB community
// specification, rfbproto.rst "QEMU Extended Key Event Pseudo-encoding").
const (
	encRaw         = 0
	encZRLE        = 16
	encDesktopSize = -223
	encExtKey      = -258
)

// msgQEMU is the QEMU client message type and qemuExtKey its extended key
// event submessage: U8 255, U8 0, U16 down-flag, U32 keysym, U32 keycode
// (rfbproto.rst "QEMU Extended Key Event Message").
const (
	msgQEMU    = 255
	qemuExtKey = 0
)

// xtKey turns an extended key event's keycode into a Key: XT make codes
// below 0x80 as they are, 0xE0-prefixed ones with bit 7 set (rfbproto.rst:
// 0xE0 0x4D is 0xCD). 0xC6 is Pause, as QEMU numbers it (ui/input-keymap.c
// Q_KEY_CODE_PAUSE = 0xc6). Zero, 0x80 and anything above a byte are no
// key.
func xtKey(code uint32) display.Key {
	switch {
	case code == 0xc6:
		return display.KeyPause
	case code == 0 || code == 0x80 || code > 0xff:
		return 0
	case code&0x80 != 0:
		return display.Key(0x100 | code&0x7f)
	}
	return display.Key(code)
}

// reader handles the client's messages (RFC 6143 §7.5).
func (c *conn) reader() error {
	var b [20]byte
	for {
		if t := c.s.cfg.IdleTimeout; t > 0 {
			c.nc.SetReadDeadline(time.Now().Add(t))
		}
		typ, err := c.br.ReadByte()
		if err != nil {
			return err
		}
		switch typ {
		case 0: // SetPixelFormat
			if _, err := io.ReadFull(c.br, b[:19]); err != nil {
				return err
			}
			f := getFormat(b[3:19])
			if err := f.Validate(); err != nil {
				return err
			}
			c.mu.Lock()
			c.format = f
			c.mu.Unlock()
		case 2: // SetEncodings
			if _, err := io.ReadFull(c.br, b[:3]); err != nil {
				return err
			}
			n := int(binary.BigEndian.Uint16(b[1:3]))
			// The first encoding godm knows in the client's order of
			// preference wins (RFC 6143 §7.5.2); Raw is always allowed.
			zrle, desk, ext, chosen := false, false, false, false
			for range n {
				if _, err := io.ReadFull(c.br, b[:4]); err != nil {
					return err
				}
				switch int32(binary.BigEndian.Uint32(b[:4])) {
				case encZRLE:
					if !chosen {
						zrle, chosen = true, true
					}
				case encRaw:
					chosen = true
				case encDesktopSize:
					desk = true
				case encExtKey:
					ext = true
				}
			}
			c.mu.Lock()
			c.zrle, c.deskSize = zrle, desk
			// A client asking for raw keycodes is told the server takes
			// them with a -258 pseudo-rectangle, as QEMU answers each
			// SetEncodings that lists it (ui/vnc.c send_ext_key_event_ack).
			c.extKeyAck = ext
			c.mu.Unlock()
			if ext {
				c.signal()
			}
		case 3: // FramebufferUpdateRequest
			if _, err := io.ReadFull(c.br, b[:9]); err != nil {
				return err
			}
			r := display.Rect{X: int(binary.BigEndian.Uint16(b[1:])), Y: int(binary.BigEndian.Uint16(b[3:])),
				W: int(binary.BigEndian.Uint16(b[5:])), H: int(binary.BigEndian.Uint16(b[7:]))}
			c.request(r, b[0] != 0)
		case 4: // KeyEvent
			if _, err := io.ReadFull(c.br, b[:7]); err != nil {
				return err
			}
			if in := c.s.cfg.Input; in != nil {
				if k := c.s.keymap.Key(binary.BigEndian.Uint32(b[3:])); k != 0 {
					in.KeyEvent(k, b[0] != 0)
				}
			}
		case msgQEMU:
			sub, err := c.br.ReadByte()
			if err != nil {
				return err
			}
			if sub != qemuExtKey {
				return fmt.Errorf("unknown QEMU client message %d", sub)
			}
			if _, err := io.ReadFull(c.br, b[:10]); err != nil {
				return err
			}
			// The keycode names the key whatever the client's layout; a
			// keycode of 0 (the client does not know it) falls back to
			// the keysym, as a KeyEvent.
			c.s.extKeys.Add(1)
			k := xtKey(binary.BigEndian.Uint32(b[6:]))
			if binary.BigEndian.Uint32(b[6:]) == 0 {
				k = c.s.keymap.Key(binary.BigEndian.Uint32(b[2:]))
			}
			if in := c.s.cfg.Input; in != nil && k != 0 {
				in.KeyEvent(k, binary.BigEndian.Uint16(b[0:]) != 0)
			}
		case 5: // PointerEvent
			if _, err := io.ReadFull(c.br, b[:5]); err != nil {
				return err
			}
			c.mu.Lock()
			w, h := c.w, c.h
			c.mu.Unlock()
			if in := c.s.cfg.Input; in != nil && w > 0 && h > 0 {
				x := min(int(binary.BigEndian.Uint16(b[1:])), w-1)
				y := min(int(binary.BigEndian.Uint16(b[3:])), h-1)
				in.PointerEvent(x, y, w, h, b[0])
			}
		case 6: // ClientCutText: skipped, bounded
			if _, err := io.ReadFull(c.br, b[:7]); err != nil {
				return err
			}
			n := binary.BigEndian.Uint32(b[3:])
			if n > MaxCutText {
				return fmt.Errorf("cut text of %d bytes (limit %d)", n, MaxCutText)
			}
			if _, err := io.CopyN(io.Discard, c.br, int64(n)); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown client message type %d", typ)
		}
	}
}

// request records a FramebufferUpdateRequest: a non-incremental one marks
// its area dirty for this client.
func (c *conn) request(r display.Rect, incremental bool) {
	c.mu.Lock()
	r = r.Intersect(display.Rect{W: c.w, H: c.h})
	if !incremental {
		c.dirty.MarkRect(r)
		c.force = true
	}
	if c.pending {
		c.req = c.req.Union(r)
	} else {
		c.req, c.pending = r, true
	}
	c.mu.Unlock()
	c.signal()
}

// addDirty ORs the source's tiles of mode m into the client's bitmap.
func (c *conn) addDirty(t *display.Tiles, m display.Mode) {
	c.mu.Lock()
	if m.Serial == c.serial {
		c.dirty.Or(t)
	} // else the writer sees the new mode and redraws everything
	c.mu.Unlock()
	c.signal()
}
