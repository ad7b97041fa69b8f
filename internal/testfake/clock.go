package testfake

import (
	"sync"
	"time"

	"godm/devices/clock"
)

// Clock is a clock.Clock that moves only when told: Now starts at zero
// and changes only by Advance, and timers fire only from Advance, on the
// caller's goroutine, in the order they were created. A Clock never
// advanced is frozen: its timers never fire. The zero Clock is ready.
type Clock struct {
	mu     sync.Mutex
	now    time.Duration
	timers []*clockTimer
}

type clockTimer struct {
	c      *Clock
	at     time.Duration
	active bool
	f      func()
}

var _ clock.Clock = (*Clock)(nil)

// Now implements clock.Clock.
func (c *Clock) Now() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements clock.Clock: f runs from the Advance that reaches
// now+d.
func (c *Clock) AfterFunc(d time.Duration, f func()) clock.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &clockTimer{c: c, at: c.now + d, active: true, f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *clockTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

func (t *clockTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := t.active
	t.at, t.active = t.c.now+d, true
	return was
}

// Advance moves time forward by d and then runs the timers that became
// due (each once: a timer is re-armed only by Reset), outside the lock.
// It does not allocate for up to four due timers.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now += d
	var buf [4]func()
	due := buf[:0]
	for _, t := range c.timers {
		if t.active && t.at <= c.now {
			t.active = false
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

// Wall is c as a wall clock: Now returns origin plus c's time. Advancing
// c advances it.
func (c *Clock) Wall(origin time.Time) WallClock { return WallClock{c: c, origin: origin} }

// WallClock is a Clock seen as a wall clock (Now() time.Time), for
// devices that stamp or rate-limit by wall time.
type WallClock struct {
	c      *Clock
	origin time.Time
}

// Now returns the wall time.
func (w WallClock) Now() time.Time { return w.origin.Add(w.c.Now()) }
