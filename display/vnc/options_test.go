package vnc

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestParseOption(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want Options
		err  string
	}{
		{"none", Options{}, ""},
		{"127.0.0.1:0", Options{Enabled: true, Host: "127.0.0.1"}, ""},
		{"127.0.0.1:3,password=on,to=99", Options{Enabled: true, Host: "127.0.0.1", Display: 3, To: 99, Password: true}, ""},
		{"0.0.0.0:1,to=99", Options{Enabled: true, Host: "0.0.0.0", Display: 1, To: 99}, ""},
		{":5", Options{Enabled: true, Display: 5, To: 5}, ""},
		{"[::1]:2,password", Options{Enabled: true, Host: "::1", Display: 2, To: 2, Password: true}, ""},
		{"localhost:7,password=off", Options{Enabled: true, Host: "localhost", Display: 7, To: 7}, ""},
		{"127.0.0.1", Options{}, "HOST:DISPLAY"},
		{"127.0.0.1:x", Options{}, "display"},
		{"127.0.0.1:-1", Options{}, "display"},
		{"127.0.0.1:70000", Options{}, "display"},
		{"::1:0", Options{}, "brackets"},
		{"[1.2.3.4]:0", Options{}, "IPv6"},
		{"127.0.0.1:5,to=2", Options{}, "to=2"},
		{"127.0.0.1:0,lossy=on", Options{}, "lossy"},
		{"127.0.0.1:0,password=maybe", Options{}, "password"},
		{"none,password=on", Options{}, "password"},
		{"", Options{}, ""},
	} {
		got, err := ParseOption(tc.arg)
		if tc.arg == "" {
			if err == nil {
				t.Errorf("empty -vnc accepted: %+v", got)
			}
			continue
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want one mentioning %q", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.arg, got, err, tc.want)
		}
		if got.To == 0 && got.Display != 0 {
			t.Errorf("%q: To below Display", tc.arg)
		}
	}
}

// to= moves on to the next display when the first port is taken.
func TestListenTo(t *testing.T) {
	// Find a free display in 5950..5998 whose successor is free too.
	for d := 50; d < 99; d++ {
		busy, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(BasePort+d))
		if err != nil {
			continue
		}
		defer busy.Close()
		ln, err := Options{Enabled: true, Host: "127.0.0.1", Display: d, To: d + 1}.Listen()
		if err != nil {
			continue // the next one was taken by someone else; try further
		}
		defer ln.Close()
		if got := ln.Addr().(*net.TCPAddr).Port; got != BasePort+d+1 {
			t.Fatalf("listened on %d, want %d", got, BasePort+d+1)
		}
		if _, err := (Options{Enabled: true, Host: "127.0.0.1", Display: d, To: d}).Listen(); err == nil {
			t.Fatal("a busy display without to= was accepted")
		}
		if _, err := (Options{}).Listen(); err != ErrDisabled {
			t.Fatalf("-vnc none Listen: %v", err)
		}
		return
	}
	t.Skip("no two consecutive free loopback ports in 5950..5999")
}
