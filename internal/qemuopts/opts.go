package qemuopts

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Opts is one parsed option: its keys and values in the order given, which
// of them a getter has consumed, and whether help was asked for.
type Opts struct {
	option  string // "-device", "device_add": the first word of every message
	label   string // the value that names the instance ("isa-serial"), or ""
	noun    string // "property" for devices, "parameter" otherwise
	entries []entry
	index   map[string]int

	// Help is set by "help" or "?" as a flag or as the implied value:
	// "-device help" (no driver) or "-device isa-serial,help".
	Help bool
}

type entry struct {
	key, value string
	used       bool
}

// Parse parses arg, the argument of the command-line option named option
// ("-device"), whose first element may omit "implied=" (implied is "" for
// options without an implied key, such as -drive).
func Parse(option, arg, implied string) (*Opts, error) {
	o := newOpts(option, implied)
	first := true
	for p := 0; p < len(arg); {
		// QEMU util/qemu-option.c get_opt_name_value: the element is a
		// key=value pair only if '=' comes before the next ','.
		end := strings.IndexAny(arg[p:], "=,")
		if end < 0 || arg[p+end] == ',' {
			if first && implied != "" {
				v, next := value(arg, p)
				p = next
				first = false
				if isHelp(v) {
					o.Help = true
					continue
				}
				if err := o.add(implied, v); err != nil {
					return nil, err
				}
				o.label = v
				continue
			}
			name := arg[p:]
			if end >= 0 {
				name = arg[p : p+end]
				p += end + 1
			} else {
				p = len(arg)
			}
			first = false
			switch {
			case name == "":
				return nil, fmt.Errorf("%s: empty %s name in %q", o.prefix(), o.noun, arg)
			case isHelp(name):
				o.Help = true
			case strings.HasPrefix(name, "no") && len(name) > 2:
				if err := o.add(name[2:], "off"); err != nil {
					return nil, err
				}
			default:
				if err := o.add(name, "on"); err != nil {
					return nil, err
				}
			}
			continue
		}
		key := arg[p : p+end]
		if key == "" {
			return nil, fmt.Errorf("%s: empty %s name in %q", o.prefix(), o.noun, arg)
		}
		v, next := value(arg, p+end+1)
		p = next
		first = false
		if err := o.add(key, v); err != nil {
			return nil, err
		}
		if key == implied {
			o.label = v
		}
	}
	return o, nil
}

// FromJSON builds Opts from a QMP argument dictionary (device_add,
// netdev_add). Strings are taken as they are, booleans become "on"/"off"
// and numbers their decimal text, as QEMU's qemu_opts_from_qdict does;
// objects, arrays and null are refused (QEMU drops them silently). The
// value of "driver" (else "type") names the instance in messages.
func FromJSON(option string, obj map[string]any) (*Opts, error) {
	implied := ""
	if _, ok := obj["driver"]; ok {
		implied = "driver"
	} else if _, ok := obj["type"]; ok {
		implied = "type"
	}
	o := newOpts(option, implied)
	if v, ok := obj[implied].(string); ok {
		o.label = v
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("%s: empty %s name", o.prefix(), o.noun)
		}
		var s string
		switch v := obj[k].(type) {
		case string:
			s = v
		case bool:
			s = "off"
			if v {
				s = "on"
			}
		case json.Number:
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return nil, fmt.Errorf("%s: %s '%s' is not a valid number", o.prefix(), o.noun, k)
			}
			s = string(v)
		case float64:
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s: %s '%s' is not a valid number", o.prefix(), o.noun, k)
			}
			s = strconv.FormatFloat(v, 'f', -1, 64)
		case int:
			s = strconv.Itoa(v)
		case int64:
			s = strconv.FormatInt(v, 10)
		case uint64:
			s = strconv.FormatUint(v, 10)
		default:
			return nil, fmt.Errorf("%s: %s '%s' must be a string, a number or a boolean", o.prefix(), o.noun, k)
		}
		if err := o.add(k, s); err != nil {
			return nil, err
		}
	}
	return o, nil
}

func newOpts(option, implied string) *Opts {
	noun := "parameter"
	if implied == "driver" {
		noun = "property"
	}
	return &Opts{option: option, noun: noun, index: make(map[string]int)}
}

// value reads a value starting at p up to the next single ',' (",," is a
// literal comma: QEMU get_opt_value) and returns it with the index after
// that ','.
func value(arg string, p int) (string, int) {
	var b strings.Builder
	for {
		i := strings.IndexByte(arg[p:], ',')
		if i < 0 {
			if b.Len() == 0 {
				return arg[p:], len(arg)
			}
			b.WriteString(arg[p:])
			return b.String(), len(arg)
		}
		if p+i+1 < len(arg) && arg[p+i+1] == ',' {
			b.WriteString(arg[p : p+i+1])
			p += i + 2
			continue
		}
		if b.Len() == 0 {
			return arg[p : p+i], p + i + 1
		}
		b.WriteString(arg[p : p+i])
		return b.String(), p + i + 1
	}
}

// isHelp is QEMU's is_help_option (include/qemu/help_option.h).
func isHelp(s string) bool { return s == "help" || s == "?" }

func (o *Opts) add(key, v string) error {
	if _, dup := o.index[key]; dup {
		return fmt.Errorf("%s: %s '%s' given twice", o.prefix(), o.noun, key)
	}
	if key == "id" && !WellFormedID(v) {
		return fmt.Errorf("%s: %s 'id' expects an identifier (letters, digits, '-', '.', '_', starting with a letter), not %q", o.prefix(), o.noun, v)
	}
	o.index[key] = len(o.entries)
	o.entries = append(o.entries, entry{key: key, value: v})
	return nil
}

// WellFormedID is QEMU's id_wellformed (util/id.c): a letter, then letters,
// digits, '-', '.' or '_'.
func WellFormedID(id string) bool {
	if id == "" || !isAlpha(id[0]) {
		return false
	}
	for i := 1; i < len(id); i++ {
		c := id[i]
		if !isAlpha(c) && !isDigit(c) && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// prefix is the start of every message: the option and, when known, the
// instance ("-device isa-serial").
func (o *Opts) prefix() string {
	if o.label != "" {
		return o.option + " " + o.label
	}
	return o.option
}

// Option returns the option name given to Parse or FromJSON.
func (o *Opts) Option() string { return o.option }

// Label returns the implied key's value ("isa-serial" for -device
// isa-serial), or "".
func (o *Opts) Label() string { return o.label }

// Errorf returns an error whose message starts like the parser's own
// ("-device isa-serial: ..."), for the checks a driver makes itself.
func (o *Opts) Errorf(format string, a ...any) error {
	return errors.New(o.prefix() + ": " + fmt.Sprintf(format, a...))
}

// Keys returns the keys in the order given. It marks nothing used.
func (o *Opts) Keys() []string {
	keys := make([]string, len(o.entries))
	for i, e := range o.entries {
		keys[i] = e.key
	}
	return keys
}

// Has reports whether key was given. It does not mark the key used.
func (o *Opts) Has(key string) bool {
	_, ok := o.index[key]
	return ok
}

func (o *Opts) take(key string) (string, bool) {
	i, ok := o.index[key]
	if !ok {
		return "", false
	}
	o.entries[i].used = true
	return o.entries[i].value, true
}

// ID returns the value of "id" (already checked to be an identifier), or
// "", and marks it used.
func (o *Opts) ID() string {
	v, _ := o.take("id")
	return v
}

// String returns key's value, or def if key was not given.
func (o *Opts) String(key, def string) string {
	if v, ok := o.take(key); ok {
		return v
	}
	return def
}

// Require returns key's value, or an error naming the option and the key
// if it was not given.
func (o *Opts) Require(key string) (string, error) {
	if v, ok := o.take(key); ok {
		return v, nil
	}
	return "", fmt.Errorf("%s: %s '%s' is missing", o.prefix(), o.noun, key)
}

// Bool returns key's value as a boolean: on/yes/true/y or off/no/false/n
// (QEMU qapi/qapi-util.c qapi_bool_parse), or def if key was not given.
func (o *Opts) Bool(key string, def bool) (bool, error) {
	v, ok := o.take(key)
	if !ok {
		return def, nil
	}
	if b, ok := ParseBool(v); ok {
		return b, nil
	}
	return def, fmt.Errorf("%s: %s '%s' expects 'on' or 'off', not %q", o.prefix(), o.noun, key, v)
}

// ParseBool parses a boolean as QEMU does (qapi/qapi-util.c
// qapi_bool_parse): on/yes/true/y or off/no/false/n; ok is false for
// anything else.
func ParseBool(s string) (v, ok bool) {
	switch s {
	case "on", "yes", "true", "y":
		return true, true
	case "off", "no", "false", "n":
		return false, true
	}
	return false, false
}

// Uint returns key's value as an unsigned number, or def if key was not
// given. As QEMU's parse_option_number (strtoull with base 0), "0x" starts a
// hexadecimal and a leading 0 an octal number; unlike strtoull, signs and
// white space are refused.
func (o *Opts) Uint(key string, def uint64) (uint64, error) {
	v, ok := o.take(key)
	if !ok {
		return def, nil
	}
	n, err := ParseUint(v)
	switch {
	case errors.Is(err, ErrRange):
		return def, fmt.Errorf("%s: value '%s' is too large for %s '%s'", o.prefix(), v, o.noun, key)
	case err != nil:
		return def, fmt.Errorf("%s: %s '%s' expects a number, not %q", o.prefix(), o.noun, key, v)
	}
	return n, nil
}

// Size returns key's value as a byte count with QEMU's size syntax
// (ParseSize, no suffix meaning bytes), or def if key was not given.
func (o *Opts) Size(key string, def uint64) (uint64, error) {
	v, ok := o.take(key)
	if !ok {
		return def, nil
	}
	return o.sizeOf(key, v, def, false)
}

// SizeMiB is Size with QEMU's rule for -m (softmmu/vl.c
// parse_memory_options): a value whose last character is a digit counts
// MiB ("56", "0x10"), any other is a size as written ("2G", "0x1A" bytes);
// the product must fit in 64 bits.
func (o *Opts) SizeMiB(key string, def uint64) (uint64, error) {
	v, ok := o.take(key)
	if !ok {
		return def, nil
	}
	return o.sizeOf(key, v, def, v != "" && isDigit(v[len(v)-1]))
}

func (o *Opts) sizeOf(key, v string, def uint64, mib bool) (uint64, error) {
	n, err := ParseSize(v, 'B')
	if err == nil && mib {
		if n > math.MaxUint64>>20 {
			err = ErrRange
		}
		n <<= 20
	}
	switch {
	case errors.Is(err, ErrRange):
		return def, fmt.Errorf("%s: value '%s' is out of range for %s '%s'", o.prefix(), v, o.noun, key)
	case err != nil:
		return def, fmt.Errorf("%s: %s '%s' expects a non-negative number below 2^64 with an optional suffix k, M, G, T, P or E, not %q", o.prefix(), o.noun, key, v)
	}
	return n, nil
}

// CheckUnused returns an error naming the option and the first key (in the
// order given) that no getter consumed, or nil.
func (o *Opts) CheckUnused() error {
	for _, e := range o.entries {
		if !e.used {
			return fmt.Errorf("%s: unknown %s '%s'", o.prefix(), o.noun, e.key)
		}
	}
	return nil
}
