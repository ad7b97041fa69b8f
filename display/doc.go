// Package display is the vocabulary between the emulated display adapters
// (standard VGA, Cirrus: devices that own VRAM) and the front ends that show
// a guest's screen (the VNC server in display/vnc, QMP's screendump):
//
//   - Source: a framebuffer seen by a front end — its Mode (size, stride,
//     true-colour PixelFormat), a dirty bitmap of 64×64 Tiles the source
//     fills (a VGA device feeds it from Xen's track_dirty_vram page bitmap
//     or from its own writes) and Read, a copy of a rectangle;
//   - Buffer: a Source in ordinary memory (text-mode rendering, tests);
//   - InputSink: where keyboard and pointer events go, with the keysym to
//     PS/2 scancode tables (set 1 and set 2, US layout) in Keymap;
//   - WritePPM/WritePNG: a screendump of a Source.
//
// Nothing here is on the ioreq hot path: front ends read the framebuffer
// from their own goroutines, at their own pace.
package display
