// Package qmpdisplay is the QMP face of the display layer: the handlers of
// query-vnc, change-vnc-password and screendump (the commands libxl and
// admins send about the display; QEMU 7.2 qapi/ui.json), over a
// display/vnc server and a display.Source. It is wiring, apart from both
// internal/qmp (the protocol) and display (which knows no QMP).
package qmpdisplay

import (
	"os"

	"godm/display"
	"godm/display/vnc"
	"godm/internal/qmp"
)

// Commands returns the handlers. srv nil means "-vnc none"; src nil means
// no display device ("-vga none").
func Commands(srv *vnc.Server, src display.Source) map[string]qmp.Handler {
	return map[string]qmp.Handler{
		"query-vnc": func(r *qmp.Request) (any, error) {
			if err := qmp.ArgsOf(r.Args).Check(); err != nil {
				return nil, err
			}
			return vnc.QueryVNC(srv), nil
		},
		"change-vnc-password": func(r *qmp.Request) (any, error) {
			a := qmp.ArgsOf(r.Args)
			pw, err := a.String("password")
			if err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			// QEMU 7.2 ui/vnc.c qmp_change_vnc_password: one message for
			// "no VNC" and "VNC without password auth".
			if srv == nil || srv.SetPassword(pw) != nil {
				return nil, qmp.Errorf("Could not set password")
			}
			return nil, nil
		},
		"screendump": func(r *qmp.Request) (any, error) {
			a := qmp.ArgsOf(r.Args)
			name, err := a.String("filename")
			if err != nil {
				return nil, err
			}
			format, err := a.OptString("format", "ppm")
			if err != nil {
				return nil, err
			}
			dev, err := a.OptString("device", "")
			if err != nil {
				return nil, err
			}
			head, err := a.OptInt("head", 0, 0, 1<<31-1)
			if err != nil {
				return nil, err
			}
			if err := a.Check(); err != nil {
				return nil, err
			}
			if format != "ppm" && format != "png" {
				return nil, qmp.Errorf("Parameter 'format' does not accept value '%s'", format)
			}
			if dev != "" {
				return nil, qmp.NewError(qmp.ClassDeviceNotFound, "Device '%s' not found", dev)
			}
			if head != 0 {
				return nil, qmp.Errorf("screendump: the display has one head, not head %d", head)
			}
			if src == nil {
				return nil, qmp.Errorf("screendump: this machine has no display device")
			}
			f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
			if err != nil {
				return nil, qmp.Errorf("failed to open file '%s': %v", name, err)
			}
			if format == "png" {
				err = display.WritePNG(f, src)
			} else {
				err = display.WritePPM(f, src)
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return nil, qmp.Errorf("screendump to '%s': %v", name, err)
			}
			return nil, nil
		},
	}
}
