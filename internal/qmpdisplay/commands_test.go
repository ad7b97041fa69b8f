package qmpdisplay

import (
	"bytes"
	"encoding/json"
	"image/png"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/display"
	"godm/display/vnc"
	"godm/internal/qmp"
)

func call(t *testing.T, cmds map[string]qmp.Handler, name string, args map[string]any) (any, error) {
	t.Helper()
	// Arguments arrive as decoded JSON (numbers as json.Number).
	raw, _ := json.Marshal(args)
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	m := map[string]any{}
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return cmds[name](&qmp.Request{Command: name, Args: m})
}

func TestCommands(t *testing.T) {
	fb, err := display.NewBuffer(32, 16, display.XRGB8888)
	if err != nil {
		t.Fatal(err)
	}
	fb.Fill(display.Rect{X: 8, Y: 4, W: 4, H: 4}, 0xff, 0x80, 0x01)
	srv, err := vnc.New(vnc.Config{Source: fb, Auth: vnc.AuthVNC})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	cmds := Commands(srv, fb)

	if _, err := call(t, cmds, "change-vnc-password", map[string]any{"password": "abc"}); err != nil {
		t.Fatal(err)
	}
	if _, err := call(t, cmds, "change-vnc-password", map[string]any{}); err == nil || !strings.Contains(err.Error(), "'password' is missing") {
		t.Errorf("missing password: %v", err)
	}
	if _, err := call(t, cmds, "change-vnc-password", map[string]any{"password": "a", "x": 1}); err == nil {
		t.Error("unexpected argument accepted")
	}
	none := Commands(nil, nil)
	if _, err := call(t, none, "change-vnc-password", map[string]any{"password": "a"}); err == nil || err.Error() != "GenericError: Could not set password" {
		t.Errorf("-vnc none: %v", err)
	}
	if q, err := call(t, none, "query-vnc", nil); err != nil || q.(map[string]any)["enabled"] != false {
		t.Errorf("query-vnc -vnc none: %v %v", q, err)
	}
	if q, err := call(t, cmds, "query-vnc", nil); err != nil || q.(map[string]any)["auth"] != "vnc" {
		t.Errorf("query-vnc: %v %v", q, err)
	}

	dir := t.TempDir()
	ppm := filepath.Join(dir, "s.ppm")
	if _, err := call(t, cmds, "screendump", map[string]any{"filename": ppm}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(ppm)
	hdr := "P6\n32 16\n255\n"
	if !bytes.HasPrefix(b, []byte(hdr)) || len(b) != len(hdr)+32*16*3 {
		t.Fatalf("PPM of %d bytes: %q", len(b), b[:min(len(b), 16)])
	}
	if px := b[len(hdr)+3*(5*32+9):][:3]; !bytes.Equal(px, []byte{0xff, 0x80, 0x01}) {
		t.Errorf("PPM pixel (9,5) = % x", px)
	}
	pngPath := filepath.Join(dir, "s.png")
	if _, err := call(t, cmds, "screendump", map[string]any{"filename": pngPath, "format": "png"}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(pngPath)
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r, g, b, _ := img.At(9, 5).RGBA(); r>>8 != 0xff || g>>8 != 0x80 || b>>8 != 1 {
		t.Errorf("PNG pixel (9,5) = %x %x %x", r>>8, g>>8, b>>8)
	}
	for _, tc := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"filename": ppm, "format": "jpeg"}, "format"},
		{map[string]any{"filename": ppm, "device": "video0"}, "DeviceNotFound"},
		{map[string]any{"filename": ppm, "head": 1}, "head 1"},
		{map[string]any{"filename": filepath.Join(dir, "no", "such", "dir")}, "failed to open"},
		{map[string]any{}, "'filename' is missing"},
	} {
		if _, err := call(t, cmds, "screendump", tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("screendump %v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := call(t, none, "screendump", map[string]any{"filename": ppm}); err == nil {
		t.Error("screendump without a display succeeded")
	}
}
