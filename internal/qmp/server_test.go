package qmp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"godm/internal/unixsock"

	"golang.org/x/sys/unix"
)

// testClient is a QMP client over a real Unix socket that reads messages
// the way libxl does: split on "\r\n".
type testClient struct {
	t    *testing.T
	conn *net.UnixConn
	r    *bufio.Reader
}

func dial(t *testing.T, path string) *testClient {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testClient{t: t, conn: c, r: bufio.NewReader(c)}
}

// line returns the next message without its "\r\n", failing the test if
// the server does not end it with "\r\n".
func (c *testClient) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("message not terminated by \\r\\n: %q", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

func (c *testClient) msg() map[string]any {
	c.t.Helper()
	l := c.line()
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(l))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		c.t.Fatalf("reply %q: %v", l, err)
	}
	return m
}

func (c *testClient) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// negotiate reads the greeting and completes capabilities negotiation.
func (c *testClient) negotiate() {
	c.t.Helper()
	c.line()
	c.send(`{"execute":"qmp_capabilities"}` + "\r\n")
	if got := c.line(); got != `{"return": {}}` {
		c.t.Fatalf("qmp_capabilities: %s", got)
	}
}

// wantError checks an error reply's class and description.
func wantError(t *testing.T, m map[string]any, class, desc string) {
	t.Helper()
	e, ok := m["error"].(map[string]any)
	if !ok || e["class"] != class || e["desc"] != desc {
		t.Fatalf("reply %v, want error %s %q", m, class, desc)
	}
}

func newServer(t *testing.T, cfg Config, monitors ...string) (*Server, map[string]string) {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths := map[string]string{}
	for _, m := range monitors {
		p := filepath.Join(dir, m)
		ln, err := unixsock.Listen(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Serve(m, ln); err != nil {
			t.Fatal(err)
		}
		paths[m] = p
	}
	t.Cleanup(func() { s.Close() })
	return s, paths
}

var fixedNow = func() time.Time { return time.Unix(1700000000, 123456789) }

func basicCommands() map[string]Handler {
	return map[string]Handler{
		"query-status": func(r *Request) (any, error) {
			return map[string]any{"status": "prelaunch", "running": false, "singlestep": false}, nil
		},
		"cont": func(r *Request) (any, error) { return nil, nil },
		"device_del": func(r *Request) (any, error) {
			a := ArgsOf(r.Args)
			id, err := a.String("id")
			if err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			return nil, NewError(ClassDeviceNotFound, "Device '%s' not found", id)
		},
		"plain-error": func(r *Request) (any, error) { return nil, errors.New("it broke") },
		"panics":      func(r *Request) (any, error) { panic("handler bug") },
		"bad-result":  func(r *Request) (any, error) { return make(chan int), nil },
		"echo":        func(r *Request) (any, error) { return r.Args, nil },
		"list":        func(r *Request) (any, error) { return []string{}, nil },
	}
}

func TestGreetingAndNegotiation(t *testing.T) {
	_, paths := newServer(t, Config{Commands: basicCommands(), Now: fixedNow}, "libxl-cmd")
	c := dial(t, paths["libxl-cmd"])
	if got, want := c.line(), `{"QMP": {"capabilities": [], "version": {"package": "godm", "qemu": {"major": 7, "micro": 0, "minor": 2}}}}`; got != want {
		t.Fatalf("greeting\n got %s\nwant %s", got, want)
	}
	// Before negotiation every command is "not found", as QEMU answers.
	c.send(`{"execute":"query-status","id":1}`)
	wantError(t, c.msg(), ClassCommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'")
	c.send(`{"execute":"no-such-command","id":2}`)
	wantError(t, c.msg(), ClassCommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'")
	c.send(`{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":3}`)
	wantError(t, c.msg(), ClassGenericError, "Capability 'oob' not available")
	c.send(`{"execute":"qmp_capabilities","arguments":{"x":1},"id":4}`)
	wantError(t, c.msg(), ClassGenericError, "Parameter 'x' is unexpected")
	// libxl's exact bytes (libxl_qmp.c qmp_prepare_cmd).
	c.send(`{"execute":"qmp_capabilities","id":2020372736}` + "\r\n")
	if got := c.line(); got != `{"id": 2020372736, "return": {}}` {
		t.Fatalf("qmp_capabilities reply %s", got)
	}
	c.send(`{"execute":"qmp_capabilities","id":5}`)
	wantError(t, c.msg(), ClassCommandNotFound, "Capabilities negotiation is already complete, command ignored")
	c.send(`{"execute":"query-status","id":2020372737}` + "\r\n")
	if got := c.line(); got != `{"id": 2020372737, "return": {"running": false, "singlestep": false, "status": "prelaunch"}}` {
		t.Fatalf("query-status reply %s", got)
	}
	c.send(`{"execute":"cont"}`)
	if got := c.line(); got != `{"return": {}}` {
		t.Fatalf("cont reply %s", got)
	}
	c.send(`{"execute":"list"}`)
	if got := c.line(); got != `{"return": []}` {
		t.Fatalf("list reply %s", got)
	}
}

func TestIDEchoedVerbatim(t *testing.T) {
	_, paths := newServer(t, Config{Commands: basicCommands()}, "m")
	c := dial(t, paths["m"])
	c.negotiate()
	for _, id := range []string{`1`, `-7`, `18446744073709551615`, `1.5`, `1e300`, `"abc"`, `"<&>\u00e9"`, `null`, `true`,
		`[1,"a",{"b":null}]`, `{"x":{"y":[]}}`} {
		c.send(`{"id":` + id + `,"execute":"cont"}`)
		var want any
		d := json.NewDecoder(strings.NewReader(id))
		d.UseNumber()
		if err := d.Decode(&want); err != nil {
			t.Fatal(err)
		}
		wantID, _ := json.Marshal(want)
		got := c.msg()
		gotID, _ := json.Marshal(got["id"])
		if string(gotID) != string(wantID) || got["return"] == nil {
			t.Errorf("id %s: reply %v (id %s)", id, got, gotID)
		}
	}
	// The id is echoed on errors too, even on a malformed request.
	c.send(`{"id":"e1","execute":"nope"}`)
	m := c.msg()
	wantError(t, m, ClassCommandNotFound, "The command nope has not been found")
	if m["id"] != "e1" {
		t.Errorf("error reply without id: %v", m)
	}
	c.send(`{"id":[2],"execute":3}`)
	m = c.msg()
	wantError(t, m, ClassGenericError, "QMP input member 'execute' must be a string")
	if fmt.Sprint(m["id"]) != "[2]" {
		t.Errorf("error reply id: %v", m)
	}
}

func TestRequestErrors(t *testing.T) {
	_, paths := newServer(t, Config{Commands: basicCommands()}, "m")
	c := dial(t, paths["m"])
	c.negotiate()
	for _, tc := range []struct{ in, class, desc string }{
		{`[1,2]`, ClassGenericError, "QMP input must be a JSON object"},
		{`42 `, ClassGenericError, "QMP input must be a JSON object"},
		{`"str"`, ClassGenericError, "QMP input must be a JSON object"},
		{`{}`, ClassGenericError, "QMP input lacks member 'execute'"},
		{`{"arguments":{}}`, ClassGenericError, "QMP input lacks member 'execute'"},
		{`{"execute":"cont","arguments":[]}`, ClassGenericError, "QMP input member 'arguments' must be an object"},
		{`{"execute":"cont","bogus":1}`, ClassGenericError, "QMP input member 'bogus' is unexpected"},
		{`{"exec-oob":"cont"}`, ClassGenericError, "QMP input member 'exec-oob' is unexpected"},
		{`{"execute":"device_del","arguments":{"id":"pci-pt-03_00.0"}}`, ClassDeviceNotFound, "Device 'pci-pt-03_00.0' not found"},
		{`{"execute":"device_del","arguments":{}}`, ClassGenericError, "Parameter 'id' is missing"},
		{`{"execute":"device_del","arguments":{"id":7}}`, ClassGenericError, "Invalid parameter type for 'id', expected: string"},
		{`{"execute":"device_del","arguments":{"id":"a","force":true}}`, ClassGenericError, "Parameter 'force' is unexpected"},
		{`{"execute":"plain-error"}`, ClassGenericError, "it broke"},
		{`{"execute":"panics"}`, ClassGenericError, "internal error while running panics"},
		{`{"execute":"bad-result"}`, ClassGenericError, "internal error: the reply cannot be encoded: json: unsupported type: chan int"},
		// Malformed JSON: one error each, and the stream goes on.
		{`{"execute": }`, ClassGenericError, "JSON parse error, invalid character '}' looking for beginning of value"},
		{`{foo}`, ClassGenericError, "JSON parse error, invalid character 'f' looking for beginning of object key string"},
		{`{"execute":"cont","execute":"stop"}`, ClassGenericError, `JSON parse error, duplicate key "execute"`},
		{`{"execute":"c\u0000"}`, ClassGenericError, `JSON parse error, \u0000 is not supported`},
		{"{\"execute\":\"\xff\"}", ClassGenericError, "JSON parse error, invalid UTF-8 sequence"},
		{`{"a":[}`, ClassGenericError, "JSON parse error, invalid character '}' looking for beginning of value"},
		{`]`, ClassGenericError, "JSON parse error, invalid character ']' looking for beginning of value"},
		{`tru `, ClassGenericError, "JSON parse error, invalid character ' ' in literal true (expecting 'e')"},
	} {
		c.send(tc.in + "\n")
		m := c.msg()
		e, _ := m["error"].(map[string]any)
		if e == nil || e["class"] != tc.class || e["desc"] != tc.desc {
			t.Errorf("%s: reply %v, want %s %q", tc.in, m, tc.class, tc.desc)
		}
	}
	// Still serving after all that.
	c.send(`{"execute":"query-status","id":9}`)
	if m := c.msg(); m["return"] == nil {
		t.Fatalf("after errors: %v", m)
	}
}

func TestStreamFraming(t *testing.T) {
	_, paths := newServer(t, Config{Commands: basicCommands()}, "m")
	c := dial(t, paths["m"])
	c.negotiate()
	// Several requests in one write, one request over many writes, no
	// separators, strings holding braces.
	c.send(`{"execute":"cont","id":1}{"execute":"cont","id":2} [] {"execute":"echo","arguments":{"s":"}{]["},"id":3}`)
	for _, want := range []string{`{"id": 1, "return": {}}`, `{"id": 2, "return": {}}`,
		`{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}`,
		`{"id": 3, "return": {"s": "}{]["}}`} {
		if got := c.line(); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	req := `{"execute":"echo","arguments":{"n":18446744073709551615,"q":"a\"b\\"},"id":4}`
	for i := 0; i < len(req); i++ {
		c.send(req[i : i+1])
	}
	if got, want := c.line(), `{"id": 4, "return": {"n": 18446744073709551615, "q": "a\"b\\"}}`; got != want {
		t.Fatalf("byte by byte: got %s, want %s", got, want)
	}
}

func TestTooLargeClosesConnection(t *testing.T) {
	_, paths := newServer(t, Config{Commands: basicCommands()}, "m")
	c := dial(t, paths["m"])
	c.negotiate()
	// One byte over the default 1 MiB bound, never closed.
	big := `{"execute":"echo","arguments":{"s":"` + strings.Repeat("x", 1<<20)
	go c.conn.Write([]byte(big))
	wantError(t, c.msg(), ClassGenericError, "JSON message too large (over 1048576 bytes), closing the connection")
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.r.ReadByte(); err != io.EOF {
		t.Fatalf("connection not closed after the error: %v", err)
	}
	// Another client is served as before, and a message just below the
	// bound passes.
	d := dial(t, paths["m"])
	d.negotiate()
	ok := `{"execute":"echo","arguments":{"s":"` + strings.Repeat("y", 1<<19) + `"}}`
	go d.conn.Write([]byte(ok))
	if m := d.msg(); len(fmt.Sprint(m["return"])) < 1<<19 {
		t.Fatalf("large but allowed message: %.100v", m)
	}
}

func TestNestingBounded(t *testing.T) {
	_, paths := newServer(t, Config{Commands: basicCommands()}, "m")
	c := dial(t, paths["m"])
	c.negotiate()
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	c.send(deep)
	wantError(t, c.msg(), ClassGenericError, "JSON parse error, nesting depth limit exceeded")
	// Depth at the bound is fine.
	ok := `{"execute":"echo","arguments":{"a":` + strings.Repeat("[", 1022) + strings.Repeat("]", 1022) + `}}`
	c.send(ok)
	if m := c.msg(); m["return"] == nil {
		t.Fatalf("nesting at the bound refused: %.200v", m)
	}
}

func TestEventsAndMonitors(t *testing.T) {
	s, paths := newServer(t, Config{Commands: basicCommands(), Now: fixedNow}, "libxl-cmd", "libxenstat-cmd")
	a := dial(t, paths["libxl-cmd"])
	a.negotiate()
	b := dial(t, paths["libxenstat-cmd"])
	b.negotiate()
	b2 := dial(t, paths["libxenstat-cmd"]) // several clients on one monitor
	b2.negotiate()
	pending := dial(t, paths["libxl-cmd"]) // not negotiated: gets no events
	pending.line()

	if err := s.Emit("STOP", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Emit("DEVICE_DELETED", map[string]any{"device": "pci-pt-03_00.0", "path": "/machine/peripheral/pci-pt-03_00.0"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testClient{a, b, b2} {
		if got, want := c.line(), `{"event": "STOP", "timestamp": {"microseconds": 123456, "seconds": 1700000000}}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		if got, want := c.line(), `{"data": {"device": "pci-pt-03_00.0", "path": "/machine/peripheral/pci-pt-03_00.0"}, "event": "DEVICE_DELETED", "timestamp": {"microseconds": 123456, "seconds": 1700000000}}`; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
	// The pending client's next message is its own reply, not an event.
	pending.send(`{"execute":"qmp_capabilities","id":"p"}`)
	if got := pending.line(); got != `{"id": "p", "return": {}}` {
		t.Errorf("pending client got %s", got)
	}
	if err := s.Emit("BAD", map[string]any{"c": make(chan int)}); err == nil {
		t.Error("Emit of unmarshallable data did not fail")
	}
}

// A handler emitting an event: the event goes out before the reply, as
// QEMU's "stop" sends STOP then its return.
func TestEventFromHandler(t *testing.T) {
	var sp atomic.Pointer[Server] // the kernel orders set and use; the race detector cannot see it
	cmds := map[string]Handler{"stop": func(r *Request) (any, error) { return nil, sp.Load().Emit("STOP", nil) }}
	s, paths := newServer(t, Config{Commands: cmds, Now: fixedNow}, "m")
	sp.Store(s)
	c := dial(t, paths["m"])
	c.negotiate()
	c.send(`{"execute":"stop","id":1}`)
	if got := c.msg(); got["event"] != "STOP" {
		t.Fatalf("first message %v, want the STOP event", got)
	}
	if got := c.line(); got != `{"id": 1, "return": {}}` {
		t.Fatalf("reply %s", got)
	}
}

func TestSlowClientDoesNotBlock(t *testing.T) {
	s, paths := newServer(t, Config{Commands: basicCommands(), QueueLen: 8}, "m")
	slow := dial(t, paths["m"])
	slow.negotiate()
	// A small receive buffer so that the kernel stops taking bytes soon.
	slow.conn.SetReadBuffer(4096)
	fast := dial(t, paths["m"])
	fast.negotiate()

	// The emitter never waits for the slow client: each event reaches the
	// fast one while the slow one's socket buffer and queue fill up.
	const n = 3000
	payload := map[string]any{"pad": strings.Repeat("z", 1000)}
	for i := 0; i < n; i++ {
		if err := s.Emit("TICK", payload); err != nil {
			t.Fatal(err)
		}
		if m := fast.msg(); m["event"] != "TICK" {
			t.Fatalf("fast client got %v", m)
		}
	}
	// The slow client was disconnected once its queue filled: reading what
	// is buffered ends in EOF (or a reset), well before n events.
	slow.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	events := 0
	for {
		l, err := slow.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("slow client was not disconnected")
			}
			break
		}
		if strings.Contains(l, "TICK") {
			events++
		}
	}
	if events >= n {
		t.Fatalf("slow client received all %d events", events)
	}
	if c := s.Clients(); c != 1 {
		t.Errorf("clients = %d, want 1", c)
	}
}

func TestConcurrentClientsSerialised(t *testing.T) {
	var inside, maxInside atomic.Int32
	cmds := map[string]Handler{"work": func(r *Request) (any, error) {
		v := inside.Add(1)
		for {
			m := maxInside.Load()
			if v <= m || maxInside.CompareAndSwap(m, v) {
				break
			}
		}
		time.Sleep(time.Millisecond)
		inside.Add(-1)
		return r.Args, nil
	}}
	_, paths := newServer(t, Config{Commands: cmds}, "a", "b")
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		path := paths["a"]
		if i%2 == 1 {
			path = paths["b"]
		}
		c := dial(t, path)
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c.line()
			c.send(`{"execute":"qmp_capabilities"}`)
			c.line()
			for j := 0; j < 10; j++ {
				c.send(fmt.Sprintf(`{"execute":"work","arguments":{"c":%d,"j":%d},"id":%d}`, i, j, j))
				if got, want := c.line(), fmt.Sprintf(`{"id": %d, "return": {"c": %d, "j": %d}}`, j, i, j); got != want {
					t.Errorf("client %d: got %s, want %s", i, got, want)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	if m := maxInside.Load(); m != 1 {
		t.Errorf("%d handlers ran at once", m)
	}
}

// sendWithFD writes msg with fd attached to its first byte, as libxl does
// (libxl_qmp.c qmp_ev_callback_writable, libxl__sendmsg_fds).
func sendWithFD(t *testing.T, c *net.UnixConn, msg string, fd int) {
	t.Helper()
	if _, _, err := c.WriteMsgUnix([]byte(msg[:1]), unix.UnixRights(fd), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(msg[1:])); err != nil {
		t.Fatal(err)
	}
}

func TestFDPassing(t *testing.T) {
	taken := make(chan *os.File, 1)
	cmds := map[string]Handler{
		"add-fd": func(r *Request) (any, error) {
			f := r.TakeFD()
			if f == nil {
				return nil, Errorf("No file descriptor supplied via SCM_RIGHTS")
			}
			taken <- f
			return map[string]any{"fdset-id": 0, "fd": 0}, nil
		},
	}
	_, paths := newServer(t, Config{Commands: cmds}, "m")
	c := dial(t, paths["m"])
	c.negotiate()
	file := filepath.Join(t.TempDir(), "qemu-save")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	sendWithFD(t, c.conn, `{"execute":"add-fd","id":1}`+"\r\n", int(f.Fd()))
	f.Close()
	if got := c.line(); got != `{"id": 1, "return": {"fd": 0, "fdset-id": 0}}` {
		t.Fatalf("add-fd reply %s", got)
	}
	g := <-taken
	if _, err := g.WriteString("device state"); err != nil {
		t.Fatal(err)
	}
	g.Close()
	if b, _ := os.ReadFile(file); string(b) != "device state" {
		t.Fatalf("file content %q", b)
	}
	// Without a descriptor.
	c.send(`{"execute":"add-fd","id":2}`)
	wantError(t, c.msg(), ClassGenericError, "No file descriptor supplied via SCM_RIGHTS")
}

func TestAfterReply(t *testing.T) {
	ran := make(chan struct{})
	var sp atomic.Pointer[Server]
	cmds := map[string]Handler{"quit": func(r *Request) (any, error) {
		// What quit does: reply, then shut the server down.
		r.AfterReply(func() { sp.Load().Close(); close(ran) })
		return nil, nil
	}}
	s, paths := newServer(t, Config{Commands: cmds}, "m")
	sp.Store(s)
	c := dial(t, paths["m"])
	c.negotiate()
	c.send(`{"execute":"quit","id":1}`)
	if got := c.line(); got != `{"id": 1, "return": {}}` {
		t.Fatalf("quit reply %s", got)
	}
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("AfterReply function did not run (or Close deadlocked in it)")
	}
	if _, err := os.Lstat(paths["m"]); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close from AfterReply: %v", err)
	}
}

func TestPreOpenedFD(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp-libxl-7")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	ln, err := unixsock.FromFD(fd)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{Commands: basicCommands()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Serve("libxl-cmd", ln); err != nil {
		t.Fatal(err)
	}
	c := dial(t, path)
	c.negotiate()
	c.send(`{"execute":"query-status","id":1}`)
	if m := c.msg(); fmt.Sprint(m["return"]) != "map[running:false singlestep:false status:prelaunch]" {
		t.Fatalf("query-status over the pre-opened fd: %v", m)
	}
}

func TestMaxClientsAndClose(t *testing.T) {
	s, paths := newServer(t, Config{Commands: basicCommands(), MaxClients: 2}, "m")
	a := dial(t, paths["m"])
	a.line()
	b := dial(t, paths["m"])
	b.line()
	c := dial(t, paths["m"])
	c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("third client was served")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*testClient{a, b} {
		cl.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := cl.r.ReadByte(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client not disconnected by Close: %v", err)
		}
	}
	if _, err := os.Lstat(paths["m"]); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
	if err := s.Serve("late", nil); err == nil {
		t.Error("Serve after Close succeeded")
	}
	if _, err := NewServer(Config{Commands: map[string]Handler{"qmp_capabilities": nil}}); err == nil {
		t.Error("a qmp_capabilities handler was accepted")
	}
}

func TestArgs(t *testing.T) {
	var m map[string]any
	d := json.NewDecoder(strings.NewReader(`{"s":"x","b":true,"i":-5,"big":18446744073709551615,"f":1.5,"o":{},"e":1e3}`))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	a := ArgsOf(m)
	if v, err := a.String("s"); err != nil || v != "x" {
		t.Errorf("s: %v %v", v, err)
	}
	if v, err := a.Bool("b"); err != nil || !v {
		t.Errorf("b: %v %v", v, err)
	}
	if v, err := a.Int("i", -10, 10); err != nil || v != -5 {
		t.Errorf("i: %v %v", v, err)
	}
	if v, err := a.OptInt("absent", 3, 0, 10); err != nil || v != 3 {
		t.Errorf("absent: %v %v", v, err)
	}
	if v, err := a.OptString("absent", "d"); err != nil || v != "d" {
		t.Errorf("absent: %v %v", v, err)
	}
	if v, err := a.OptBool("absent", true); err != nil || !v {
		t.Errorf("absent: %v %v", v, err)
	}
	if _, err := a.Object("o"); err != nil {
		t.Errorf("o: %v", err)
	}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{func() error { _, err := a.Int("i", 0, 10); return err }(), "GenericError: Parameter 'i' expects an integer between 0 and 10"},
		{func() error { _, err := a.Int("big", 0, 10); return err }(), "GenericError: Parameter 'big' expects an integer between 0 and 10"},
		{func() error { _, err := a.Int("f", 0, 10); return err }(), "GenericError: Invalid parameter type for 'f', expected: integer"},
		{func() error { _, err := a.Int("e", 0, 10); return err }(), "GenericError: Invalid parameter type for 'e', expected: integer"},
		{func() error { _, err := a.Int("s", 0, 10); return err }(), "GenericError: Invalid parameter type for 's', expected: integer"},
		{func() error { _, err := a.Bool("s"); return err }(), "GenericError: Invalid parameter type for 's', expected: boolean"},
		{func() error { _, err := a.String("b"); return err }(), "GenericError: Invalid parameter type for 'b', expected: string"},
		{func() error { _, err := a.Object("s"); return err }(), "GenericError: Invalid parameter type for 's', expected: object"},
		{func() error { _, err := a.String("nope"); return err }(), "GenericError: Parameter 'nope' is missing"},
	} {
		if tc.err == nil || tc.err.Error() != tc.want {
			t.Errorf("error %v, want %q", tc.err, tc.want)
		}
	}
	if err := a.Check(); err != nil {
		t.Errorf("Check after reading everything: %v", err)
	}
	b := ArgsOf(map[string]any{"z": 1, "y": 2})
	if err := b.Check(); err == nil || err.Error() != "GenericError: Parameter 'y' is unexpected" {
		t.Errorf("Check: %v", err)
	}
}
