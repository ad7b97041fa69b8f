// Package clock is the time source of devices that time themselves (the
// UART's character timeout and receive pacing): an interface, so that
// tests drive time by hand, and System, the real one.
package clock

import "time"

// Clock is a monotonic time source with timers.
type Clock interface {
	// Now returns the time elapsed since an arbitrary fixed origin.
	Now() time.Duration
	// AfterFunc arranges for f to run on its own goroutine after d and
	// returns a Timer that can stop or re-arm it.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a re-armable one-shot timer, as returned by Clock.AfterFunc.
type Timer interface {
	// Stop prevents the timer from firing; it reports whether it was
	// pending.
	Stop() bool
	// Reset re-arms the timer to fire after d; it reports whether it was
	// pending.
	Reset(d time.Duration) bool
}

type system struct{ origin time.Time }

// System returns a Clock backed by the time package (monotonic), with
// its origin at the call.
func System() Clock { return system{origin: time.Now()} }

// Now implements Clock.
func (c system) Now() time.Duration { return time.Since(c.origin) }

// AfterFunc implements Clock.
func (c system) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
