// Package hcalltest is a recording fake dom0 kernel for tests of typed
// hypercalls (packages hyp/hcall and hyp/domctl). It wraps
// hyp/internal/kerneltest and adds what that one leaves to its users: it
// follows hypercall arguments through the hypercall buffers, including
// the multicall libxenctrl uses for memory_op, records each hypercall as a
// kerneltest.Event shaped like tools/xencapture's fixtures, and answers
// like xencapture's fake kernel, so godm's encodings and decodings compare
// with the golden fixtures.
//
// A Kernel is safe for concurrent use. It is test support: it allocates
// freely and panics on nothing but reports problems as events that fail
// the comparison.
package hcalltest
