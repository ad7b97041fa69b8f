package xenstore

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Watch is a registered xenstore watch. Its events arrive on Events in the
// order xenstored sent them, starting with the initial event xenstored
// sends on registration. Events are queued without bound inside the
// Client, so a slow consumer never stalls other requests.
type Watch struct {
	c     *Client
	path  string
	token string

	events   chan Event
	notify   chan struct{} // cap 1: queue became non-empty
	quit     chan struct{} // closed by stop
	stopOnce sync.Once
	done     chan struct{} // closed when the forwarder exits

	mu    sync.Mutex
	queue []Event // +checklocks:mu
}

// Path returns the watched path as registered.
func (w *Watch) Path() string { return w.path }

// Token returns the watch's token.
func (w *Watch) Token() string { return w.token }

// Events returns the channel of events. It is closed after Unwatch, after
// Close of the Client, or when the connection is lost.
func (w *Watch) Events() <-chan Event { return w.events }

// Watch registers a watch on path (absolute, relative, or a special path
// such as "@introduceDomain"). The watch fires for changes to path and to
// any node below it. An empty token asks the Client for a unique one. A
// token already used by another watch of this Client gives an error
// wrapping unix.EEXIST (events are routed to watches by token).
func (c *Client) Watch(ctx context.Context, path, token string) (*Watch, error) {
	// Register before sending: xenstored may send the initial event
	// right behind the acknowledgement.
	w, err := c.newWatch(path, token)
	if err != nil {
		return nil, wrap("watch", path, err)
	}
	if _, err := c.request(ctx, MsgWatch, 0, cstr(path), cstr(w.token)); err != nil {
		c.dropWatch(w)
		return nil, wrap("watch", path, err)
	}
	return w, nil
}

// newWatch registers a watch locally (routing of events by token) and
// starts its forwarder, without telling xenstored.
func (c *Client) newWatch(path, token string) (*Watch, error) {
	w := &Watch{
		c:      c,
		path:   path,
		events: make(chan Event),
		notify: make(chan struct{}, 1),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.stateErrLocked(); err != nil {
		return nil, err
	}
	if token == "" {
		for {
			c.tokenN++
			token = "godm-" + strconv.FormatUint(c.tokenN, 10)
			if c.watches[token] == nil {
				break
			}
		}
	} else if c.watches[token] != nil {
		return nil, fmt.Errorf("token %q in use: %w", token, unix.EEXIST)
	}
	w.token = token
	c.watches[token] = w
	go w.forward()
	return w, nil
}

// Unwatch removes the watch (XS_UNWATCH) and closes its event channel.
// Events still queued are discarded.
func (w *Watch) Unwatch(ctx context.Context) error {
	_, err := w.c.request(ctx, MsgUnwatch, 0, cstr(w.path), cstr(w.token))
	w.c.dropWatch(w)
	return wrap("unwatch", w.path, err)
}

func (c *Client) dropWatch(w *Watch) {
	c.mu.Lock()
	if c.watches[w.token] == w {
		delete(c.watches, w.token)
	}
	c.mu.Unlock()
	w.stop()
}

func (w *Watch) push(ev Event) {
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// stop ends the forwarder and waits for it, so Events is closed on return.
func (w *Watch) stop() {
	w.stopOnce.Do(func() { close(w.quit) })
	<-w.done
}

// forward moves queued events to the events channel until stopped.
func (w *Watch) forward() {
	defer close(w.done)
	defer close(w.events)
	for {
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range q {
			select {
			case w.events <- ev:
			case <-w.quit:
				return
			}
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-w.notify:
		case <-w.quit:
			return
		}
	}
}
