package vnc

import (
	"bytes"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"godm/display"
)

// serveDisplay starts a server on a free loopback display (5950..5999)
// and returns the display number.
func serveDisplay(t *testing.T, cfg Config) (*Server, int) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Enabled: true, Host: "127.0.0.1", Display: 50, To: 99}
	ln, err := opts.Listen()
	if err != nil {
		t.Skip("no free loopback VNC port:", err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	var n int
	fmt.Sscan(port, &n)
	return s, n - BasePort
}

func lookClient(t *testing.T, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package in scripts/test-packages.txt): %v", name, err)
	}
	return p
}

// compare checks a decoded image against the source, with a per-channel
// tolerance (0 for lossless captures).
func compare(t *testing.T, img image.Image, src display.Source, tol int) {
	t.Helper()
	m, rgb, err := display.Snapshot(src)
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != m.Width || b.Dy() != m.Height {
		t.Fatalf("captured %v, want %dx%d", b, m.Width, m.Height)
	}
	worst := 0
	for y := 0; y < m.Height; y++ {
		for x := 0; x < m.Width; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			got := [3]int{int(r >> 8), int(g >> 8), int(b >> 8)}
			i := 3 * (y*m.Width + x)
			for c := range 3 {
				d := got[c] - int(rgb[i+c])
				if d < 0 {
					d = -d
				}
				worst = max(worst, d)
				if d > tol {
					t.Fatalf("pixel (%d,%d) = %v, want % x (tolerance %d)", x, y, got, rgb[i:i+3], tol)
				}
			}
		}
	}
	t.Logf("%dx%d compared, largest channel difference %d", m.Width, m.Height, worst)
}

// gvnccapture (gtk-vnc, Debian package gvncviewer) captures the screen as
// PNG; it negotiates ZRLE with godm, so this checks the ZRLE encoder and
// the handshake against an independent client, pixel for pixel.
func TestOracleGvnccapture(t *testing.T) {
	bin := lookClient(t, "gvnccapture")
	for _, auth := range []Auth{AuthNone, AuthVNC} {
		t.Run(fmt.Sprintf("auth=%d", auth), func(t *testing.T) {
			src := newPattern(t, 320, 200)
			srv, disp := serveDisplay(t, Config{Source: src, Auth: auth, Password: "s3cret"})
			defer func() {
				if st := srv.Stats(); st.RectsZRLE == 0 || st.RectsRaw != 0 {
					t.Errorf("gvnccapture was expected to take ZRLE: %+v", st)
				}
				t.Logf("stats %+v", srv.Stats())
			}()
			out := filepath.Join(t.TempDir(), "cap.png")
			cmd := exec.Command(bin, fmt.Sprintf("127.0.0.1:%d", disp), out)
			if auth == AuthVNC {
				// gvnccapture reads the password from its terminal:
				// script(1) (util-linux, essential in Debian) gives it a
				// pty fed from our stdin.
				sc, err := exec.LookPath("script")
				if err != nil {
					t.Skip("script(1) not installed:", err)
				}
				cmd = exec.Command(sc, "-q", "-e", "-c", bin+" "+fmt.Sprintf("127.0.0.1:%d", disp)+" "+out, os.DevNull)
			}
			// The password goes in once the prompt shows: the client
			// flushes earlier input when it turns echo off.
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			log := &promptWriter{prompt: "Password:", answer: "s3cret\r", w: stdin}
			cmd.Stdout, cmd.Stderr = log, log
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("gvnccapture: %v\n%s", err, log.String())
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("gvnccapture hung\n%s", log.String())
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatal(err)
			}
			compare(t, img, src, 0)
		})
	}
}

// vncsnapshot (TightVNC lineage, no ZRLE) is run with -encodings raw; it
// writes JPEG, so the comparison allows a tolerance.
func TestOracleVncsnapshot(t *testing.T) {
	bin := lookClient(t, "vncsnapshot")
	for _, auth := range []Auth{AuthNone, AuthVNC} {
		t.Run(fmt.Sprintf("auth=%d", auth), func(t *testing.T) {
			src, err := display.NewBuffer(320, 200, display.XRGB8888)
			if err != nil {
				t.Fatal(err)
			}
			// JPEG-friendly pattern: flat 8×8-aligned blocks.
			for y := 0; y < 200; y += 40 {
				for x := 0; x < 320; x += 40 {
					src.Fill(display.Rect{X: x, Y: y, W: 40, H: 40}, uint8(x*3/4), uint8(y), uint8(255-x*3/4))
				}
			}
			srv, disp := serveDisplay(t, Config{Source: src, Auth: auth, Password: "s3cret"})
			defer func() {
				if st := srv.Stats(); st.RectsRaw == 0 || st.RectsZRLE != 0 {
					t.Errorf("vncsnapshot -encodings raw was expected to take Raw: %+v", st)
				}
			}()
			dir := t.TempDir()
			out := filepath.Join(dir, "cap.jpg")
			args := []string{"-quiet", "-encodings", "raw", "-quality", "100", "-allowblank"}
			if auth == AuthVNC {
				pw := filepath.Join(dir, "passwd")
				if err := os.WriteFile(pw, vncPasswdFile("s3cret"), 0o600); err != nil {
					t.Fatal(err)
				}
				args = append(args, "-passwd", pw)
			}
			args = append(args, fmt.Sprintf("127.0.0.1:%d", disp), out)
			cmd := exec.Command(bin, args...)
			cmd.Stdin = strings.NewReader("")
			var log bytes.Buffer
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("vncsnapshot: %v\n%s", err, log.String())
				}
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("vncsnapshot hung\n%s", log.String())
			}
			f, err := os.Open(out)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			defer f.Close()
			img, err := jpeg.Decode(f)
			if err != nil {
				t.Fatal(err)
			}
			// Quality 100 JPEG of flat blocks: chroma subsampling and
			// rounding stay within a few levels; 12 of 255 is the bound.
			compare(t, img, src, 12)
		})
	}
}

// vncPasswdFile is the vncpasswd file format: the password DES-encrypted
// under the fixed key 23 82 107 6 35 78 88 7 (TightVNC's vncauth.c), with
// the same bit-reversed key use as the challenge.
func vncPasswdFile(pw string) []byte {
	fixed := string([]byte{23, 82, 107, 6, 35, 78, 88, 7})
	var p [8]byte
	copy(p[:], pw)
	return vncAuthResponse(fixed, p[:])
}

// promptWriter collects a child's output and answers a prompt once.
type promptWriter struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	prompt   string
	answer   string
	w        io.Writer
	answered bool
}

func (p *promptWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf.Write(b)
	if !p.answered && strings.Contains(p.buf.String(), p.prompt) {
		p.answered = true
		// The client turns echo off after printing the prompt, flushing
		// input that arrived first (TCSAFLUSH); so the answer is repeated
		// a few times. Lines after the one read stay unread.
		go func() {
			for range 10 {
				if _, err := p.w.Write([]byte(p.answer)); err != nil {
					return
				}
				time.Sleep(300 * time.Millisecond)
			}
		}()
	}
	return len(b), nil
}

func (p *promptWriter) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}
