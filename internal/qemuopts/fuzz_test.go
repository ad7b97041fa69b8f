package qemuopts

import (
	"errors"
	"math/big"
	"strings"
	"testing"
)

// FuzzParse checks that any option string parses or fails with a message
// naming the option, never panics, and that a parsed result is consistent:
// every key can be read back, Quote round-trips its value, and consuming
// everything leaves CheckUnused silent.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"cirrus-vga,vgamem_mb=8", "socket,id=libxl-cmd,path=/p,server=on,wait=off", "a,,b,x=1,,2", "help", "d,help",
		"server,nowait", ",=", "id=0", "x=1.5G,y=0x10,z=010", "=,,=", "",
	} {
		f.Add(s, "driver")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, arg, implied string) {
		o, err := Parse("-opt", arg, implied)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "-opt") {
				t.Fatalf("error without the option name: %v", err)
			}
			return
		}
		for _, k := range o.Keys() {
			if k == "" {
				t.Fatalf("empty key from %q", arg)
			}
			v := o.String(k, "")
			o.Bool(k, false)
			o.Uint(k, 0)
			o.Size(k, 0)
			o.SizeMiB(k, 0)
			// The value, quoted back, parses to itself.
			if k != "id" {
				q, err := Parse("-opt", "k="+Quote(v), "")
				if err != nil || q.String("k", "") != v {
					t.Fatalf("Quote round trip of %q: %v", v, err)
				}
			}
		}
		if err := o.CheckUnused(); err != nil {
			t.Fatalf("CheckUnused after reading every key: %v", err)
		}
	})
}

// FuzzParseSize checks ParseSize against a big-number reference for the
// integer-with-suffix forms, and that any value it accepts prints back to
// itself.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1k", "1.5G", "0x10", "16E", "15.99999E", "1.k", "1.5e3M", "18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s, 'B')
		if want, ok := reference(s); ok {
			switch {
			case want.IsUint64() && (err != nil || n != want.Uint64()):
				t.Fatalf("ParseSize(%q) = %d, %v; want %v", s, n, err, want)
			case !want.IsUint64() && !errors.Is(err, ErrRange):
				t.Fatalf("ParseSize(%q) = %d, %v; want ErrRange", s, n, err)
			}
		}
		if err != nil {
			return
		}
		// A value that parsed is reproduced exactly when printed in bytes.
		m, err := ParseSize(uitoa(n), 'B')
		if err != nil || m != n {
			t.Fatalf("ParseSize(%q) = %d, but its decimal form gives %d, %v", s, n, m, err)
		}
	})
}

// reference computes integer-with-suffix sizes with big numbers.
func reference(s string) (*big.Int, bool) {
	digits, mul := s, int64(1)
	if s != "" {
		if m := suffixMul(s[len(s)-1]); m != 0 {
			digits, mul = s[:len(s)-1], int64(m)
		}
	}
	if digits == "" || len(digits) > 40 || (len(digits) > 1 && digits[0] == '0' && (digits[1]|0x20) == 'x') {
		return nil, false
	}
	for i := 0; i < len(digits); i++ {
		if !isDigit(digits[i]) {
			return nil, false
		}
	}
	v, _ := new(big.Int).SetString(digits, 10)
	return v.Mul(v, big.NewInt(mul)), true
}

func uitoa(n uint64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
