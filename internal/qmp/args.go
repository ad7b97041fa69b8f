package qmp

import (
	"encoding/json"
	"math"
	"sort"
	"strconv"
)

// Args reads a command's arguments with QEMU's checks and messages
// (qapi/qobject-input-visitor.c: "Parameter '%s' is missing", "Invalid
// parameter type for '%s', expected: %s", "Parameter '%s' is unexpected").
// Every getter marks its argument used; Check reports the first argument
// (in sorted order) no getter asked for.
type Args struct {
	m    map[string]any
	used map[string]bool
}

// ArgsOf wraps a request's arguments.
func ArgsOf(m map[string]any) *Args {
	return &Args{m: m, used: make(map[string]bool, len(m))}
}

// Has reports whether name was given, without marking it used.
func (a *Args) Has(name string) bool {
	_, ok := a.m[name]
	return ok
}

func (a *Args) get(name string) (any, bool) {
	v, ok := a.m[name]
	if ok {
		a.used[name] = true
	}
	return v, ok
}

func missing(name string) *Error { return Errorf("Parameter '%s' is missing", name) }

func badType(name, want string) *Error {
	return Errorf("Invalid parameter type for '%s', expected: %s", name, want)
}

// String returns a required string argument.
func (a *Args) String(name string) (string, error) {
	v, ok := a.get(name)
	if !ok {
		return "", missing(name)
	}
	s, ok := v.(string)
	if !ok {
		return "", badType(name, "string")
	}
	return s, nil
}

// OptString returns an optional string argument, def if absent.
func (a *Args) OptString(name, def string) (string, error) {
	if _, ok := a.m[name]; !ok {
		return def, nil
	}
	return a.String(name)
}

// Bool returns a required boolean argument.
func (a *Args) Bool(name string) (bool, error) {
	v, ok := a.get(name)
	if !ok {
		return false, missing(name)
	}
	b, ok := v.(bool)
	if !ok {
		return false, badType(name, "boolean")
	}
	return b, nil
}

// OptBool returns an optional boolean argument, def if absent.
func (a *Args) OptBool(name string, def bool) (bool, error) {
	if _, ok := a.m[name]; !ok {
		return def, nil
	}
	return a.Bool(name)
}

// Int returns a required integer argument within [min, max]. A number
// with a fraction or exponent is not an integer (QEMU's QNum keeps integers
// and doubles apart).
func (a *Args) Int(name string, min, max int64) (int64, error) {
	v, ok := a.get(name)
	if !ok {
		return 0, missing(name)
	}
	var n int64
	switch x := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			if _, ferr := strconv.ParseFloat(string(x), 64); ferr == nil && isIntegerText(string(x)) {
				return 0, Errorf("Parameter '%s' expects an integer between %d and %d", name, min, max)
			}
			return 0, badType(name, "integer")
		}
		n = i
	case int:
		n = int64(x)
	case int64:
		n = x
	case float64:
		if x != math.Trunc(x) || math.Abs(x) > 1<<53 {
			return 0, badType(name, "integer")
		}
		n = int64(x)
	default:
		return 0, badType(name, "integer")
	}
	if n < min || n > max {
		return 0, Errorf("Parameter '%s' expects an integer between %d and %d", name, min, max)
	}
	return n, nil
}

// isIntegerText reports whether s is an optional '-' and digits only (an
// integer too large for int64, not a fraction).
func isIntegerText(s string) bool {
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// OptInt returns an optional integer argument within [min, max], def if absent.
func (a *Args) OptInt(name string, def, min, max int64) (int64, error) {
	if _, ok := a.m[name]; !ok {
		return def, nil
	}
	return a.Int(name, min, max)
}

// Object returns a required object argument.
func (a *Args) Object(name string) (map[string]any, error) {
	v, ok := a.get(name)
	if !ok {
		return nil, missing(name)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badType(name, "object")
	}
	return m, nil
}

// Check returns an error for the first argument no getter asked for, or nil.
func (a *Args) Check() error {
	names := make([]string, 0, len(a.m))
	for k := range a.m {
		if !a.used[k] {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return Errorf("Parameter '%s' is unexpected", names[0])
}
