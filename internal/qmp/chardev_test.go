package qmp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"godm/internal/qemuopts"

	"golang.org/x/sys/unix"
)

func TestParseMon(t *testing.T) {
	o, _ := qemuopts.Parse("-mon", "chardev=libxl-cmd,mode=control", "chardev")
	if id, err := ParseMon(o); err != nil || id != "libxl-cmd" {
		t.Fatalf("ParseMon = %q, %v", id, err)
	}
	for _, tc := range []struct{ arg, want string }{
		{"chardev=c", "-mon c: mode=readline is not supported: godm serves QMP monitors only (mode=control)"},
		{"chardev=c,mode=control,pretty=on", "-mon c: pretty=on is not supported"},
		{"chardev=c,mode=control,foo=1", "-mon c: unknown parameter 'foo'"},
		{"mode=control", "-mon: parameter 'chardev' is missing"},
	} {
		o, err := qemuopts.Parse("-mon", tc.arg, "chardev")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseMon(o); err == nil || err.Error() != tc.want {
			t.Errorf("ParseMon(%s) = %v, want %q", tc.arg, err, tc.want)
		}
	}
}

func TestListenChardev(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "qmp-libxl-7")
	o, _ := qemuopts.Parse("-chardev", "socket,id=libxl-cmd,path="+path+",server=on,wait=off", "backend")
	id, ln, err := ListenChardev(o)
	if err != nil || id != "libxl-cmd" {
		t.Fatalf("ListenChardev = %q, %v", id, err)
	}
	s, err := NewServer(Config{Commands: basicCommands()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Serve(id, ln); err != nil {
		t.Fatal(err)
	}
	c := dial(t, path)
	c.negotiate()

	// The dm_restrict form: a pre-opened listening socket.
	pre := filepath.Join(dir, "pre")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: pre}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	o, _ = qemuopts.Parse("-chardev", "socket,id=libxl-cmd,fd="+itoa(fd)+",server=on,wait=off", "backend")
	id, ln, err = ListenChardev(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(id, ln); err != nil {
		t.Fatal(err)
	}
	d := dial(t, pre)
	d.negotiate()

	f, err := os.Create(filepath.Join(dir, "file"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fileFD := int(f.Fd())
	for _, tc := range []struct{ arg, want string }{
		{"pty,id=c", `-chardev pty: a QMP monitor needs a socket chardev, not "pty"`},
		{"socket,path=/x,server=on,wait=off", "-chardev socket: parameter 'id' is missing"},
		{"socket,id=c,path=/x,wait=off", "-chardev socket: server=off (connecting out to a client) is not supported: use server=on"},
		{"socket,id=c,path=/x,server=on", "-chardev socket: wait=on (wait for a client before starting) is not supported: use wait=off"},
		{"socket,id=c,path=/x,fd=3,server=on,wait=off", "-chardev socket: path and fd are exclusive"},
		{"socket,id=c,host=127.0.0.1,port=4444,server=on,wait=off", "-chardev socket: a unix socket needs path= or fd= (host/port TCP sockets are not supported)"},
		{"socket,id=c,fd=-1,server=on,wait=off", `-chardev socket: parameter 'fd' expects a number, not "-1"`},
		{"socket,id=c,fd=99999999999,server=on,wait=off", "-chardev socket: fd=99999999999 is not a file descriptor"},
		{"socket,id=c,path=" + path + ",server=on,wait=off", "a running process is serving on this socket"},
		{"socket,id=c,path=/x,server=on,wait=off,reconnect=1", "-chardev socket: unknown parameter 'reconnect'"},
		{"socket,id=c,fd=" + itoa(fileFD) + ",server=on,wait=off", "-chardev socket: fd " + itoa(fileFD) + ": not a socket"},
	} {
		o, err := qemuopts.Parse("-chardev", tc.arg, "backend")
		if err != nil {
			t.Fatal(err)
		}
		if _, ln, err := ListenChardev(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("ListenChardev(%s) = %v, want %q", tc.arg, err, tc.want)
		}
	}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
