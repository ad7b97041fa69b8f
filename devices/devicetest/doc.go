// Package devicetest is the conformance suite every devices.Handler should
// pass, for use from the tests of device packages:
//
//	func TestConformance(t *testing.T) {
//		devicetest.Run(t, func() devices.Handler { return uart.New(...) }, 8)
//	}
//
// It drives a handler the way a hostile guest may: every offset of the
// range, every access size (1, 2, 4, 8), aligned or not, with arbitrary
// values. It checks that no access panics, that reads are masked to the
// access size, and, for devices implementing devices.Resetter, that the
// state after Reset does not depend on what the guest did before.
//
// Run is for tests only; it is single-threaded and calls newHandler a few
// times. Its cost is linear in the range size (16 accesses per offset per
// sweep), so pass the register window, not a multi-megabyte BAR.
package devicetest
