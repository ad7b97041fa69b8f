package devices

import "sync"

// Locked returns a Handler that calls h with a mutex held, for simple
// devices that keep no lock of their own. If h implements Resetter, so does
// the result (Reset also runs under the mutex).
func Locked(h Handler) Handler {
	if r, ok := h.(Resetter); ok {
		return &lockedResetter{locked: locked{h: h}, r: r}
	}
	return &locked{h: h}
}

type locked struct {
	mu sync.Mutex
	h  Handler // guarded by mu (its calls are)
}

// Read implements Handler.
func (l *locked) Read(a Access) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.h.Read(a)
}

// Write implements Handler.
func (l *locked) Write(a Access, v uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h.Write(a, v)
}

type lockedResetter struct {
	locked
	r Resetter
}

// Reset implements Resetter.
func (l *lockedResetter) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.r.Reset()
}
