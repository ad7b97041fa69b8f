package uart

import "time"

// Clock is the time source for the character-timeout interrupt. Tests
// inject a fake; SystemClock is the real one.
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

type systemClock struct{ origin time.Time }

// SystemClock returns a Clock backed by the time package (monotonic).
func SystemClock() Clock { return systemClock{origin: time.Now()} }

// Now implements Clock.
func (c systemClock) Now() time.Duration { return time.Since(c.origin) }

// AfterFunc implements Clock.
func (c systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
