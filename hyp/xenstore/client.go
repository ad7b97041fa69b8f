package xenstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	"godm/hyp"
	"golang.org/x/sys/unix"
)

// Client is a connection to xenstored. Requests from any number of
// goroutines are multiplexed over the one connection, told apart by
// req_id. A reader goroutine owned by the Client reads replies and watch
// events until Close.
type Client struct {
	conn io.ReadWriteCloser

	wmu  sync.Mutex // serialises whole messages on conn; order: before mu
	wbuf []byte     // +checklocks:wmu

	mu      sync.Mutex
	nextID  uint32                // +checklocks:mu
	pending map[uint32]chan reply // +checklocks:mu
	watches map[string]*Watch     // by token; +checklocks:mu
	err     error                 // why the connection died; +checklocks:mu
	closed  bool                  // +checklocks:mu
	tokenN  uint64                // generated token counter; +checklocks:mu

	done       chan struct{} // closed by Close
	readerDone chan struct{} // closed when the reader goroutine exits
	closeOnce  sync.Once
	closeErr   error

	stray     atomic.Uint64 // replies matching no pending request
	badEvents atomic.Uint64 // malformed or unmatched watch events
}

type reply struct {
	hdr     Header
	payload []byte
	err     error
}

// New makes a Client speaking the xenstore protocol over conn (a
// connected xenstored socket, or a xenbus device file) and starts its
// reader goroutine. The Client owns conn: Close closes it, and closing
// conn must unblock a pending Read.
func New(conn io.ReadWriteCloser) *Client {
	c := &Client{
		conn:       conn,
		pending:    make(map[uint32]chan reply),
		watches:    make(map[string]*Watch),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}
	go c.readLoop()
	return c
}

// Close stops the reader goroutine, closes the connection, fails pending
// requests with hyp.ErrClosed and closes every watch's event channel. It
// is idempotent; later calls return nil.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.done)
		c.closeErr = c.conn.Close()
		<-c.readerDone
	})
	return c.closeErr
}

// StrayReplies returns how many replies matched no outstanding request
// (e.g. replies to requests whose context was cancelled), and how many
// watch events were malformed or matched no watch. Both are dropped.
func (c *Client) StrayReplies() (replies, events uint64) {
	return c.stray.Load(), c.badEvents.Load()
}

func (c *Client) readLoop() {
	defer close(c.readerDone)
	r := bufio.NewReaderSize(c.conn, HeaderSize+PayloadMax)
	var err error
	for {
		var h Header
		var payload []byte
		h, payload, err = ReadMsg(r)
		if err != nil {
			break
		}
		if h.Type == MsgWatchEvent {
			c.dispatchEvent(payload)
			continue
		}
		c.mu.Lock()
		ch, ok := c.pending[h.ReqID]
		delete(c.pending, h.ReqID)
		c.mu.Unlock()
		if !ok {
			c.stray.Add(1)
			continue
		}
		ch <- reply{hdr: h, payload: payload} // buffered, never blocks
	}
	select {
	case <-c.done:
		err = hyp.ErrClosed
	default:
		if err == io.EOF {
			err = fmt.Errorf("xenstore: connection closed by daemon: %w", io.ErrUnexpectedEOF)
		} else {
			err = fmt.Errorf("xenstore: connection lost: %w", err)
		}
	}
	c.mu.Lock()
	if c.err == nil || errors.Is(err, hyp.ErrClosed) {
		c.err = err
	} else {
		err = c.err
	}
	for id, ch := range c.pending {
		ch <- reply{err: err}
		delete(c.pending, id)
	}
	ws := c.watches
	c.watches = make(map[string]*Watch)
	c.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
}

func (c *Client) dispatchEvent(payload []byte) {
	ev, err := ParseEvent(payload)
	if err != nil {
		c.badEvents.Add(1)
		return
	}
	c.mu.Lock()
	w := c.watches[ev.Token]
	c.mu.Unlock()
	if w == nil {
		c.badEvents.Add(1)
		return
	}
	w.push(ev)
}

// request sends one request and waits for its reply. It returns the reply
// payload, or the daemon's error as a unix.Errno, or a transport error.
func (c *Client) request(ctx context.Context, typ MsgType, tx uint32, parts ...[]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if err := c.stateErrLocked(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	id := c.nextID
	for {
		id++
		if _, busy := c.pending[id]; !busy {
			break
		}
	}
	c.nextID = id
	c.pending[id] = ch
	c.mu.Unlock()

	c.wmu.Lock()
	msg, err := AppendMsg(c.wbuf[:0], typ, id, tx, parts...)
	if err == nil {
		c.wbuf = msg[:0]
		_, err = c.conn.Write(msg)
		if err != nil {
			err = fmt.Errorf("xenstore: sending %v: %w", typ, err)
		}
	}
	c.wmu.Unlock()
	if err != nil {
		c.forget(id)
		if !errors.Is(err, unix.E2BIG) {
			// Part of a message may have gone out: the stream is
			// unusable. Closing the connection makes the reader fail
			// every pending request.
			c.fail(err)
		}
		return nil, err
	}

	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		switch r.hdr.Type {
		case typ:
			return r.payload, nil
		case MsgError:
			return nil, ParseError(r.payload)
		}
		return nil, fmt.Errorf("%w: %v reply to a %v request", ErrProtocol, r.hdr.Type, typ)
	case <-ctx.Done():
		c.forget(id)
		return nil, ctx.Err()
	}
}

// stateErrLocked returns why no request can be sent, or nil.
//
// +checklocks:c.mu
func (c *Client) stateErrLocked() error {
	if c.closed {
		return hyp.ErrClosed
	}
	return c.err
}

// fail records err as the reason the connection died and closes it.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.conn.Close()
}

func (c *Client) forget(id uint32) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// okReply checks the "OK" acknowledgement of a request that returns no
// data. xenstored sends "OK\0"; any payload is accepted, as libxenstore
// does (xs_bool only checks for a reply).
func okReply(_ []byte, err error) error { return err }

func wrap(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("xenstore %s %q: %w", op, path, err)
}

func (c *Client) read(ctx context.Context, tx uint32, path string) ([]byte, error) {
	v, err := c.request(ctx, MsgRead, tx, cstr(path))
	return v, wrap("read", path, err)
}

func (c *Client) write(ctx context.Context, tx uint32, path string, value []byte) error {
	return wrap("write", path, okReply(c.request(ctx, MsgWrite, tx, cstr(path), value)))
}

func (c *Client) mkdir(ctx context.Context, tx uint32, path string) error {
	return wrap("mkdir", path, okReply(c.request(ctx, MsgMkdir, tx, cstr(path))))
}

func (c *Client) rm(ctx context.Context, tx uint32, path string) error {
	return wrap("rm", path, okReply(c.request(ctx, MsgRm, tx, cstr(path))))
}

func (c *Client) directory(ctx context.Context, tx uint32, path string) ([]string, error) {
	p, err := c.request(ctx, MsgDirectory, tx, cstr(path))
	if errors.Is(err, unix.E2BIG) {
		names, err := c.directoryPart(ctx, tx, path)
		return names, wrap("directory", path, err)
	}
	if err != nil {
		return nil, wrap("directory", path, err)
	}
	names, err := SplitStrings(p)
	return names, wrap("directory", path, err)
}

// directoryPart lists a directory too big for one reply with
// XS_DIRECTORY_PART, restarting when the node's generation changes between
// parts (libxenstore xs_directory_part).
func (c *Client) directoryPart(ctx context.Context, tx uint32, path string) ([]string, error) {
	var (
		gen     string
		strings []byte
	)
	for restarts := 0; ; {
		off := len(strings)
		p, err := c.request(ctx, MsgDirectoryPart, tx, cstr(path), cstr(strconv.Itoa(off)))
		if err != nil {
			if errors.Is(err, unix.ENOSYS) {
				err = unix.E2BIG
			}
			return nil, err
		}
		i := indexNul(p)
		if i < 0 {
			return nil, fmt.Errorf("%w: directory part without generation", ErrProtocol)
		}
		g, rest := string(p[:i]), p[i+1:]
		if off > 0 && g != gen {
			restarts++
			if restarts > 16 {
				return nil, fmt.Errorf("xenstore: directory keeps changing: %w", unix.EAGAIN)
			}
			strings, gen = strings[:0], ""
			continue
		}
		gen = g
		strings = append(strings, rest...)
		// The last part ends with an empty string: two nuls in a row,
		// or a lone nul for an empty directory.
		n := len(strings)
		if n == 0 {
			return nil, fmt.Errorf("%w: empty directory part", ErrProtocol)
		}
		if n == 1 {
			return nil, nil
		}
		if strings[n-2] == 0 && strings[n-1] == 0 {
			return SplitStrings(strings[:n-1])
		}
		if len(rest) == 0 {
			return nil, fmt.Errorf("%w: directory part made no progress", ErrProtocol)
		}
	}
}

func indexNul(b []byte) int {
	for i, x := range b {
		if x == 0 {
			return i
		}
	}
	return -1
}

func (c *Client) getPerms(ctx context.Context, tx uint32, path string) ([]Perm, error) {
	p, err := c.request(ctx, MsgGetPerms, tx, cstr(path))
	if err != nil {
		return nil, wrap("get-perms", path, err)
	}
	perms, err := ParsePerms(p)
	return perms, wrap("get-perms", path, err)
}

func (c *Client) setPerms(ctx context.Context, tx uint32, path string, perms []Perm) error {
	if len(perms) == 0 {
		return wrap("set-perms", path, unix.EINVAL)
	}
	for _, p := range perms {
		if p.Access.Letter() == '?' {
			return wrap("set-perms", path, unix.EINVAL)
		}
	}
	return wrap("set-perms", path, okReply(c.request(ctx, MsgSetPerms, tx, cstr(path), AppendPerms(nil, perms))))
}

// Read returns the value of the node at path (absolute, or relative to
// the connection's domain path).
func (c *Client) Read(ctx context.Context, path string) ([]byte, error) {
	return c.read(ctx, 0, path)
}

// Write sets the value of the node at path, creating it and any missing
// parents.
func (c *Client) Write(ctx context.Context, path string, value []byte) error {
	return c.write(ctx, 0, path, value)
}

// Mkdir creates the node at path with an empty value (and any missing
// parents); an existing node is left alone.
func (c *Client) Mkdir(ctx context.Context, path string) error {
	return c.mkdir(ctx, 0, path)
}

// Rm removes the node at path and everything below it. Removing a missing
// node whose parent exists succeeds.
func (c *Client) Rm(ctx context.Context, path string) error {
	return c.rm(ctx, 0, path)
}

// Directory lists the names of the children of path.
func (c *Client) Directory(ctx context.Context, path string) ([]string, error) {
	return c.directory(ctx, 0, path)
}

// GetPerms returns the permissions of path: first the owner (with the
// access of unlisted domains), then the ACL entries.
func (c *Client) GetPerms(ctx context.Context, path string) ([]Perm, error) {
	return c.getPerms(ctx, 0, path)
}

// SetPerms replaces the permissions of path (see GetPerms for the layout).
func (c *Client) SetPerms(ctx context.Context, path string, perms []Perm) error {
	return c.setPerms(ctx, 0, path, perms)
}

// GetDomainPath returns the home path of dom, e.g. "/local/domain/5".
func (c *Client) GetDomainPath(ctx context.Context, dom hyp.DomID) (string, error) {
	p, err := c.request(ctx, MsgGetDomainPath, 0, cstr(strconv.Itoa(int(dom))))
	if err != nil {
		return "", fmt.Errorf("xenstore get-domain-path %v: %w", dom, err)
	}
	return string(trimNul(p)), nil
}

// IsDomainIntroduced reports whether xenstored knows dom.
func (c *Client) IsDomainIntroduced(ctx context.Context, dom hyp.DomID) (bool, error) {
	p, err := c.request(ctx, MsgIsDomainIntroduced, 0, cstr(strconv.Itoa(int(dom))))
	if err != nil {
		return false, fmt.Errorf("xenstore is-domain-introduced %v: %w", dom, err)
	}
	return string(trimNul(p)) != "F", nil
}
