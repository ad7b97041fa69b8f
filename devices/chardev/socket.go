package chardev

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"godm/internal/unixsock"
)

// Socket is a backend that listens on a Unix stream socket and serves one
// client at a time: further clients wait in the listen backlog until the
// current one disconnects. Output produced while no client is connected is
// dropped and counted.
type Socket struct {
	*core
	ln   *net.UnixListener
	conn atomic.Pointer[net.UnixConn]
	opt  Options

	clients atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

var _ Backend = (*Socket)(nil)

// ErrSocketInUse reports that a process still accepts connections on the
// socket path given to Listen.
var ErrSocketInUse = unixsock.ErrInUse

// Listen creates a Unix socket at path and starts serving. The socket file
// is removed on Close. A socket file left at path by a process that died
// without removing it is replaced; one a live process still listens on is
// not (ErrSocketInUse); anything else at path is refused (unixsock.Listen).
func Listen(path string, opt Options) (*Socket, error) {
	ln, err := unixsock.Listen(path)
	if err != nil {
		return nil, fmt.Errorf("chardev: %w", err)
	}
	s := &Socket{core: newCore(opt), ln: ln, opt: opt}
	s.startWriter(s.out, func() {
		if c := s.conn.Load(); c != nil {
			_ = c.SetWriteDeadline(time.Now().Add(opt.flushTimeout()))
		}
	})
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr returns the socket path.
func (s *Socket) Addr() string { return s.ln.Addr().String() }

// Clients returns how many clients have connected so far.
func (s *Socket) Clients() uint64 { return s.clients.Load() }

func (s *Socket) out(p []byte) (int, error) {
	c := s.conn.Load()
	if c == nil {
		return 0, errNoClient
	}
	return c.Write(p)
}

var errNoClient = errors.New("chardev: no client connected")

func (s *Socket) serve() {
	defer s.wg.Done()
	var buf [4096]byte
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient accept failure (for example EMFILE): back off.
			t := time.NewTimer(s.opt.retryInterval())
			select {
			case <-t.C:
				continue
			case <-s.done:
				t.Stop()
				return
			}
		}
		s.conn.Store(c)
		s.clients.Add(1)
		if s.closed() {
			// Close may have run before the Store; it cannot have
			// unblocked this connection, so do it here.
			s.conn.Store(nil)
			c.Close()
			return
		}
		for {
			n, err := c.Read(buf[:])
			if n > 0 {
				if !s.deliver(buf[:n]) {
					break
				}
				s.note(evInput)
			}
			if err != nil {
				break
			}
		}
		s.conn.Store(nil)
		c.Close()
		s.note(evDisconnect)
		if s.closed() {
			return
		}
	}
}

// Close implements Backend: it flushes for at most Options.FlushTimeout,
// disconnects the client, removes the socket and stops the goroutines.
func (s *Socket) Close() error {
	s.closeOnce.Do(func() {
		s.shutdown(func() {
			if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
				s.closeErr = fmt.Errorf("chardev: close listener: %w", err)
			}
			if c := s.conn.Load(); c != nil {
				_ = c.SetReadDeadline(time.Now())
				// Bound a write already blocked on a stalled client.
				_ = c.SetWriteDeadline(time.Now().Add(s.opt.flushTimeout()))
			}
		})
	})
	return s.closeErr
}
