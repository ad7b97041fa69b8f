package metrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"godm/internal/unixsock"
)

// Limits of the endpoint (hostile clients: a scraper on the host, but
// anything that can reach the socket).
const (
	maxRequest = 8 << 10         // request line and headers
	maxConns   = 4               // served at once; more wait in the backlog
	ioTimeout  = 5 * time.Second // per connection, reading and writing
)

// Listen opens the endpoint addr names: "unix:PATH" (a socket file; a dead
// process's stale one is replaced, a live one refused: unixsock.Listen), or "tcp:HOST:PORT" / "HOST:PORT" with HOST a loopback
// address (127.0.0.0/8, ::1) or "localhost". Anything else is refused:
// godm's counters never leave the host.
func Listen(addr string) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		if p == "" {
			return nil, errors.New("metrics: unix: wants a socket path")
		}
		ln, err := unixsock.Listen(p)
		if err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		return ln, nil
	}
	hp := strings.TrimPrefix(addr, "tcp:")
	host, _, err := net.SplitHostPort(hp)
	if err != nil {
		return nil, fmt.Errorf("metrics: %q: want unix:PATH or a loopback HOST:PORT", addr)
	}
	if host != "localhost" {
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("metrics: %q: only a loopback address or a unix socket is served", addr)
		}
	}
	if host == "localhost" {
		hp = net.JoinHostPort("127.0.0.1", hp[len(host)+1:])
	}
	return net.Listen("tcp", hp)
}

// Server answers GET /metrics on a listener with the families gather
// returns, in the text format. It is safe for concurrent use.
type Server struct {
	ln     net.Listener
	gather func() []Family
	sem    chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
}

// Serve starts serving ln until Close.
func Serve(ln net.Listener, gather func() []Family) *Server {
	s := &Server{ln: ln, gather: gather, sem: make(chan struct{}, maxConns), conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		s.sem <- struct{}{}
		c, err := s.ln.Accept()
		if err != nil {
			<-s.sem
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.sem
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() { <-s.sem }()
			s.serveConn(c)
			linger(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// serveConn answers one request (Connection: close): the request line
// and headers up to an empty line, within maxRequest bytes and ioTimeout.
func (s *Server) serveConn(c net.Conn) {
	c.SetDeadline(time.Now().Add(ioTimeout))
	r := bufio.NewReaderSize(&limitReader{c: c, left: maxRequest}, 1024)
	line, err := r.ReadString('\n')
	if err != nil {
		reply(c, "400 Bad Request", "request line too long or missing\n", "")
		return
	}
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			reply(c, "431 Request Header Fields Too Large", "headers too large or incomplete\n", "")
			return
		}
		if h == "\r\n" || h == "\n" {
			break
		}
	}
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/1.") {
		reply(c, "400 Bad Request", "not an HTTP/1.x request\n", "")
		return
	}
	path, _, _ := strings.Cut(f[1], "?")
	switch {
	case path != "/metrics" && path != "/":
		reply(c, "404 Not Found", "only /metrics is served\n", "")
	case f[0] != "GET" && f[0] != "HEAD":
		reply(c, "405 Method Not Allowed", "only GET\n", "Allow: GET, HEAD\r\n")
	default:
		var body bytes.Buffer
		WriteText(&body, s.gather())
		if f[0] == "HEAD" {
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", body.Len())
			return
		}
		reply(c, "200 OK", body.String(), "")
	}
}

// linger ends the reply (half-close) and drains what the client still
// sends, within a bound, so that unread request bytes do not turn the
// close into a reset that destroys the reply before the client reads it.
func linger(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	io.CopyN(io.Discard, c, 64<<10)
}

func reply(c net.Conn, status, body, extra string) {
	fmt.Fprintf(c, "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s",
		status, len(body), extra, body)
}

type limitReader struct {
	c    net.Conn
	left int
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errors.New("request too large")
	}
	if len(p) > l.left {
		p = p[:l.left]
	}
	n, err := l.c.Read(p)
	l.left -= n
	return n, err
}

// Close stops the endpoint and waits for the connections in progress
// (each ends within ioTimeout). A Unix socket's file is removed.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}
