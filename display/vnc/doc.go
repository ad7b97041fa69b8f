// Package vnc is godm's VNC server: RFB 3.8 (RFC 6143), with the 3.3 and
// 3.7 handshakes, security types None and VNC Authentication, the Raw and
// ZRLE encodings and the DesktopSize pseudo-encoding. It shows a
// display.Source and sends keyboard and pointer events to a
// display.InputSink.
//
// Threading: one goroutine per client reads its messages, another writes
// its updates; one pump goroutine collects the source's dirty tiles on a
// refresh timer (QEMU's ui/vnc.h pacing: 30 ms, growing by 50 ms up to
// 3 s while nothing changes) and ORs them into every client's own bitmap.
// A client's state is therefore bounded whatever its speed: a dirty
// bitmap, one pending request rectangle and one rectangle's encoding
// buffers; a slow client gets coalesced updates, never a queue.
//
// Hostile clients: every message is read with bounded buffers; an unknown
// message type, a colour-map or impossible pixel format, or a cut-text
// longer than MaxCutText ends the connection. Handshakes have a deadline,
// idle clients are dropped after Config.IdleTimeout, writes that stall
// for WriteTimeout end the client.
package vnc
