package board

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"godm/internal/qemuopts"
)

// Props are a device's parsed properties (the key=value pairs of a
// -device option or a QMP device_add dictionary, without "driver" and
// "id"). Getters return the default when the key is absent and mark the
// key used; a value of the wrong form is an error naming the key. The
// board refuses keys no constructor used (Unused), as QEMU refuses an
// unknown property.
//
// The board's own implementation is MapProps; the QEMU option parser
// (internal/qemuopts) can back it too.
type Props interface {
	String(key, def string) string
	Bool(key string, def bool) (bool, error)
	Uint(key string, def uint64) (uint64, error)
	// Unused returns the keys present that no getter asked for, sorted.
	Unused() []string
}

// MapProps is Props over a map of strings.
type MapProps struct {
	m    map[string]string
	used map[string]bool
}

// NewProps returns Props holding m (which it does not copy or change).
func NewProps(m map[string]string) *MapProps {
	return &MapProps{m: m, used: make(map[string]bool)}
}

// ParseProps parses "k=v,k=v" (no escapes, no implied key): the small
// syntax the board's own default list and tests use. The QEMU option
// syntax belongs to internal/qemuopts.
func ParseProps(s string) (*MapProps, error) {
	m := make(map[string]string)
	if s != "" {
		for _, kv := range strings.Split(s, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("property %q: want key=value", kv)
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("property %q given twice", k)
			}
			m[k] = v
		}
	}
	return NewProps(m), nil
}

func (p *MapProps) get(key string) (string, bool) {
	v, ok := p.m[key]
	if ok {
		p.used[key] = true
	}
	return v, ok
}

// String implements Props.
func (p *MapProps) String(key, def string) string {
	if v, ok := p.get(key); ok {
		return v
	}
	return def
}

// Bool implements Props with QEMU's spellings (qemuopts.ParseBool:
// on/off, yes/no, true/false, y/n).
func (p *MapProps) Bool(key string, def bool) (bool, error) {
	v, ok := p.get(key)
	if !ok {
		return def, nil
	}
	if b, ok := qemuopts.ParseBool(v); ok {
		return b, nil
	}
	return false, fmt.Errorf("property '%s': '%s' is not a boolean (on/off)", key, v)
}

// Uint implements Props as QEMU's integer properties parse
// (qemuopts.ParseUint: decimal, 0x hexadecimal, 0 octal; no signs, Go
// prefixes or '_').
func (p *MapProps) Uint(key string, def uint64) (uint64, error) {
	v, ok := p.get(key)
	if !ok {
		return def, nil
	}
	n, err := qemuopts.ParseUint(v)
	if err != nil {
		return 0, fmt.Errorf("property '%s': '%s' is not a number", key, v)
	}
	return n, nil
}

// Unused implements Props.
func (p *MapProps) Unused() []string {
	var out []string
	for k := range p.m {
		if !p.used[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// pciAddr reads the "addr" property, "slot[.fn]" in hexadecimal as QEMU
// spells PCI addresses (hw/core/qdev-properties-system.c
// set_pci_devfn). ok is false when the property is absent.
func pciAddr(p Props) (slot, fn uint8, ok bool, err error) {
	s := p.String("addr", "")
	if s == "" {
		return 0, 0, false, nil
	}
	ss, fs, hasFn := strings.Cut(s, ".")
	sl, err1 := strconv.ParseUint(ss, 16, 8)
	f := uint64(0)
	var err2 error
	if hasFn {
		f, err2 = strconv.ParseUint(fs, 16, 8)
	}
	if err1 != nil || err2 != nil || sl > 31 || f > 7 {
		return 0, 0, false, fmt.Errorf("property 'addr': '%s' is not a PCI address (slot 0..1f, optional .function 0..7)", s)
	}
	return uint8(sl), uint8(f), true, nil
}

// ParseEntry parses "DRIVER[,k=v...]" (a -device argument in the board's
// small syntax; see ParseProps).
func ParseEntry(s string) (Entry, error) {
	driver, rest, _ := strings.Cut(s, ",")
	if driver == "" {
		return Entry{}, fmt.Errorf("device %q: no driver", s)
	}
	p, err := ParseProps(rest)
	if err != nil {
		return Entry{}, fmt.Errorf("device %q: %w", s, err)
	}
	return Entry{Driver: driver, Props: p.m}, nil
}
