package cli

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewLogger(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		var b bytes.Buffer
		log := NewLogger(&b, verbose)
		log.Debug("debug detail")
		log.Info("platform event")
		log.Warn("a warning", "k", 1)
		log.Error("an error", "err", "EPERM")
		got := b.String()
		for _, want := range []string{`level=WARN msg="a warning" k=1`, `level=ERROR msg="an error" err=EPERM`} {
			if !strings.Contains(got, want) {
				t.Errorf("verbose %v: log lacks %q:\n%s", verbose, want, got)
			}
		}
		for _, detail := range []string{"debug detail", "platform event"} {
			if strings.Contains(got, detail) != verbose {
				t.Errorf("verbose %v: %q logged: %v\n%s", verbose, detail, !verbose, got)
			}
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  string
	}{
		{"0", 0, ""}, {"4096", 4096, ""}, {"0xf0000000", 0xf0000000, ""},
		{"2G", 2 << 30, ""}, {"3840M", 3840 << 20, ""}, {"64k", 64 << 10, ""}, {"1T", 1 << 40, ""},
		{"16777216T", 0, "too large"}, {"18446744073709551615", ^uint64(0), ""},
		{"18446744073709551616", 0, "want a byte count"}, {"-1", 0, "want a byte count"},
		{"", 0, "want a byte count"}, {"G", 0, "want a byte count"}, {"1.5G", 0, "want a byte count"},
	} {
		got, err := ParseSize(tc.in)
		if tc.err == "" && (err != nil || got != tc.want) {
			t.Errorf("ParseSize(%q) = %#x, %v; want %#x", tc.in, got, err, tc.want)
		}
		if tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseSize(%q) = %#x, %v; want an error containing %q", tc.in, got, err, tc.err)
		}
	}
}

// TestSpecLayoutAndStart: the flags give the machine its RAM layout, and
// a file: log is replaced only by Backends.Start.
func TestSpecLayoutAndStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "com1.log")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var mf MachineFlags
	mf.Register(fs, 1)
	if err := fs.Parse([]string{"-mem", "8192", "-max-ram-below-4g", "3G", "-serial", "file:" + path}); err != nil {
		t.Fatal(err)
	}
	spec, be, err := mf.Spec(NewLogger(io.Discard, false), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	l, err := spec.Layout()
	if err != nil {
		t.Fatal(err)
	}
	if l.Below4G != 3<<30 || l.Above4G != 5<<30 || spec.MemBytes != 8<<30 {
		t.Errorf("layout %+v, MemBytes %#x", l, spec.MemBytes)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("log replaced before the start: %q", got)
	}
	if err := be.Start(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); len(got) != 0 {
		t.Errorf("log after Start = %q, want it replaced", got)
	}
}

func TestSpecKeepP(t *testing.T) {
	for _, tc := range []struct {
		arg  string
		want time.Duration
		bad  bool
	}{{"2ms", 2 * time.Millisecond, false}, {"0", 0, false}, {"-1ms", 0, true}} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		var mf MachineFlags
		mf.Register(fs, 1)
		if err := fs.Parse([]string{"-mem", "32", "-keep-p", tc.arg}); err != nil {
			t.Fatal(err)
		}
		spec, be, err := mf.Spec(NewLogger(io.Discard, false), io.Discard)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), "-keep-p") || strings.Contains(err.Error(), "\n") {
				t.Errorf("-keep-p %s: error %v, want one line naming the flag", tc.arg, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("-keep-p %s: %v", tc.arg, err)
		}
		be.Close()
		if spec.Worker.KeepP != tc.want {
			t.Errorf("-keep-p %s: KeepP %v, want %v", tc.arg, spec.Worker.KeepP, tc.want)
		}
	}
}
