package qemuopts

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
)

var (
	// ErrSyntax is returned (wrapped) for a number or size that does not parse.
	ErrSyntax = errors.New("invalid number")
	// ErrRange is returned (wrapped) for a number or size that does not fit in 64 bits.
	ErrRange = errors.New("number out of range")
)

// ParseUint parses an unsigned 64-bit number as QEMU's parse_option_number
// does (qemu_strtou64 with base 0): "0x"/"0X" and hexadecimal digits, a
// leading "0" and octal digits, or decimal digits. Unlike strtoull it
// refuses white space, signs (strtoull wraps "-1" to 2^64-1), and Go's
// "0o"/"0b" prefixes and '_' separators.
func ParseUint(s string) (uint64, error) {
	digits, base := s, 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		digits, base = s[2:], 16
	case len(s) > 1 && s[0] == '0':
		digits, base = s[1:], 8
	}
	if digits == "" {
		return 0, ErrSyntax
	}
	for i := 0; i < len(digits); i++ {
		if digitVal(digits[i]) >= base {
			return 0, ErrSyntax
		}
	}
	n, err := strconv.ParseUint(digits, base, 64)
	if err != nil {
		// Every character is a digit of base, so the only failure left is range.
		return 0, ErrRange
	}
	return n, nil
}

func digitVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c|0x20 >= 'a' && c|0x20 <= 'f':
		return int(c|0x20-'a') + 10
	}
	return 99
}

// suffixMul is QEMU's suffix_mul (util/cutils.c) with unit 1024: B, K, M, G,
// T, P, E in either case; 0 for anything else.
func suffixMul(c byte) uint64 {
	switch c | 0x20 {
	case 'b':
		return 1
	case 'k':
		return 1 << 10
	case 'm':
		return 1 << 20
	case 'g':
		return 1 << 30
	case 't':
		return 1 << 40
	case 'p':
		return 1 << 50
	case 'e':
		return 1 << 60
	}
	return 0
}

// ParseSize parses a byte count with QEMU's size syntax (util/cutils.c
// do_strtosz, unit 1024); defaultSuffix ('B', 'K', 'M', ...) scales a number
// written without a suffix.
//
//   - decimal digits, an optional fraction, an optional suffix B/K/M/G/T/P/E
//     (either case): "512", "64k", "1.5G", "1.k";
//   - a fraction needs a scale above bytes ("1.5" or "1.5B" is refused unless
//     defaultSuffix scales it), exponents are refused ("1.5e3");
//   - "0x" and hexadecimal digits, without fraction or suffix (QEMU 8.0 and
//     later; 7.2 still accepted a suffix with a deprecation warning);
//   - the exact product, rounded half up, must fit in 64 bits, else ErrRange;
//   - no sign, no white space, nothing after the suffix.
func ParseSize(s string, defaultSuffix byte) (uint64, error) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == 0 {
		return 0, ErrSyntax
	}
	var val, frac uint64 // frac: the fraction as a 0.64 fixed-point number
	rest := s[i:]
	if s[:i] == "0" && rest != "" && (rest[0] == 'x' || rest[0] == 'X') {
		j := 1
		for j < len(rest) && digitVal(rest[j]) < 16 {
			j++
		}
		if j == 1 {
			return 0, ErrSyntax
		}
		n, err := strconv.ParseUint(rest[1:j], 16, 64)
		if err != nil {
			return 0, ErrRange
		}
		if j < len(rest) {
			// A fraction or a scaling suffix after hex: refused.
			return 0, ErrSyntax
		}
		return n, nil
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		return 0, ErrRange
	}
	val = n
	if rest != "" && rest[0] == '.' {
		k := 1
		for k < len(rest) && isDigit(rest[k]) {
			k++
		}
		if k > 1 && k < len(rest) && rest[k]|0x20 == 'e' && hasExponent(rest[k+1:]) {
			return 0, ErrSyntax
		}
		if k > 1 {
			f, err := strconv.ParseFloat("0"+rest[:k], 64)
			if err != nil {
				return 0, ErrSyntax
			}
			// QEMU: valf = (uint64_t)(fraction * 0x1p64), the fraction as a
			// 0.64 fixed-point number; a fraction that rounds to 1.0 is
			// clamped instead of overflowing the conversion.
			if x := f * 0x1p64; x >= 0x1p64 {
				frac = math.MaxUint64
			} else {
				frac = uint64(x)
			}
		}
		rest = rest[k:]
	}
	mul := uint64(0)
	if rest != "" {
		mul = suffixMul(rest[0])
		if mul != 0 {
			rest = rest[1:]
		}
	}
	if mul == 0 {
		mul = suffixMul(defaultSuffix)
		if mul == 0 {
			mul = 1
		}
	}
	if rest != "" {
		return 0, ErrSyntax
	}
	if mul == 1 {
		if frac != 0 {
			return 0, ErrSyntax
		}
		return val, nil
	}
	// Exact 64.64 x 64 product, rounded half up (QEMU: mulu64 twice).
	hi, lo := bits.Mul64(val, mul)
	fhi, flo := bits.Mul64(frac, mul)
	lo, c := bits.Add64(lo, fhi, 0)
	hi += c
	lo, c = bits.Add64(lo, flo>>63, 0)
	hi += c
	if hi != 0 {
		return 0, ErrRange
	}
	return lo, nil
}

// hasExponent reports whether s starts like the exponent strtod would
// consume after an 'e': an optional sign and a digit.
func hasExponent(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	return s != "" && isDigit(s[0])
}
