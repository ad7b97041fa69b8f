package uart

import "godm/devices/clock"

// Clock is the time source for the character-timeout interrupt and the
// receive pacing. Tests inject a fake; SystemClock is the real one.
type Clock = clock.Clock

// Timer is a re-armable one-shot timer, as returned by Clock.AfterFunc.
type Timer = clock.Timer

// SystemClock returns a Clock backed by the time package (monotonic).
func SystemClock() Clock { return clock.System() }
