package xenplatform_test

import (
	"godm/devices/piix3"
	"godm/devices/piix4pm"
	"godm/hyp/dm"
)

// The wiring hands the DM-op client straight to the base platform.
var (
	_ piix3.LinkRouter   = (*dm.Client)(nil)
	_ piix3.INTxSink     = (*dm.Client)(nil)
	_ piix3.Shutdowner   = (*dm.Client)(nil)
	_ piix4pm.Shutdowner = (*dm.Client)(nil)
)
