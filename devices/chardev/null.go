package chardev

import "sync/atomic"

// Null is a backend that discards output and never produces input.
type Null struct {
	written atomic.Uint64
}

var _ Backend = (*Null)(nil)

// NewNull returns a Null backend.
func NewNull() *Null { return &Null{} }

// Write implements Backend: every byte is accepted and discarded.
func (n *Null) Write(p []byte) int {
	n.written.Add(uint64(len(p)))
	return len(p)
}

// Attach implements Backend; Null never produces input.
func (n *Null) Attach(Sink) {}

// Ready implements Backend.
func (n *Null) Ready() {}

// Stats implements Backend.
func (n *Null) Stats() Stats { return Stats{Written: n.written.Load()} }

// Close implements Backend.
func (n *Null) Close() error { return nil }
