package board

import "testing"

// A device's properties read as QEMU reads them from -device or
// device_add (internal/qemuopts' number and boolean rules): every boolean
// spelling, octal and hexadecimal numbers, and none of Go's own forms.
func TestPropsQEMUSyntax(t *testing.T) {
	for v, want := range map[string]bool{"on": true, "yes": true, "true": true, "y": true,
		"off": false, "no": false, "false": false, "n": false} {
		got, err := NewProps(map[string]string{"b": v}).Bool("b", !want)
		if err != nil || got != want {
			t.Errorf("Bool(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"", "On", "1", "maybe"} {
		if _, err := NewProps(map[string]string{"b": v}).Bool("b", false); err == nil {
			t.Errorf("Bool(%q) accepted", v)
		}
	}
	for v, want := range map[string]uint64{"10": 10, "0x10": 16, "0X1f": 31, "010": 8, "0": 0, "18446744073709551615": 1<<64 - 1} {
		got, err := NewProps(map[string]string{"n": v}).Uint("n", 7)
		if err != nil || got != want {
			t.Errorf("Uint(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, v := range []string{"1_000", "0b1", "0o7", "-1", "+1", " 1", "08", "0x", "18446744073709551616"} {
		if n, err := NewProps(map[string]string{"n": v}).Uint("n", 0); err == nil {
			t.Errorf("Uint(%q) = %d, want an error", v, n)
		}
	}
}
