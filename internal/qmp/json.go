package qmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// errTooLarge ends a connection: the message being received grew past the
// bound, and what follows it cannot be trusted to resynchronise.
var errTooLarge = errors.New("message too large")

// framer splits a byte stream into top-level JSON values without parsing
// them, as QEMU's json-streamer does (qobject/json-streamer.c: a value ends
// when its braces and brackets balance), so that one bad message costs one
// error reply and the stream carries on with the next value. It keeps at
// most max bytes of the value being received; a value nested deeper than
// maxDepth is skipped (counted, not stored) and reported once complete.
type framer struct {
	max, maxDepth int

	buf   []byte
	open  []byte // closers expected, innermost last (bounded by maxDepth)
	size  int    // bytes of the current value, kept or skipped
	mode  int
	depth int
	inStr bool
	esc   bool
}

const (
	modeIdle   = iota // between values
	modeValue         // inside an object, array or top-level string
	modeScalar        // inside a top-level token that is not an object (an error to come)
	modeSkip          // inside a value past the nesting bound
)

// errNesting is reported for a value nested deeper than the bound.
var errNesting = errors.New("JSON parse error, nesting depth limit exceeded")

// feed consumes p, calling emit for every complete value (frame, nil) or
// every skipped one (nil, errNesting). The frame is only valid during the
// call. It returns errTooLarge, and stops, if a value outgrows the bound.
func (f *framer) feed(p []byte, emit func(frame []byte, err error)) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		f.size++
		switch f.mode {
		case modeIdle:
			f.size = 1
			switch c {
			case ' ', '\t', '\r', '\n':
			case '{', '[':
				f.mode, f.depth, f.buf = modeValue, 1, append(f.buf[:0], c)
				f.open = append(f.open[:0], closer(c))
			case '"':
				f.mode, f.depth, f.inStr, f.buf = modeValue, 0, true, append(f.buf[:0], c)
			default:
				f.mode, f.buf = modeScalar, append(f.buf[:0], c)
			}
		case modeScalar:
			switch c {
			case ' ', '\t', '\r', '\n', '{', '[', '"':
				emit(f.buf, nil)
				f.mode, f.buf = modeIdle, f.buf[:0]
				i-- // c starts what comes next
				f.size--
				continue
			}
			f.buf = append(f.buf, c)
		case modeValue, modeSkip:
			if f.mode == modeValue {
				f.buf = append(f.buf, c)
			}
			if f.inStr {
				switch {
				case f.esc:
					f.esc = false
				case c == '\\':
					f.esc = true
				case c == '"':
					f.inStr = false
				}
				if f.inStr || f.depth > 0 {
					break
				}
				emit(f.buf, nil) // a top-level string
				f.mode, f.buf = modeIdle, f.buf[:0]
				continue
			}
			switch c {
			case '"':
				f.inStr = true
			case '{', '[':
				f.depth++
				if f.depth > f.maxDepth && f.mode == modeValue {
					f.mode, f.buf, f.open = modeSkip, f.buf[:0], f.open[:0]
				}
				if f.mode == modeValue {
					f.open = append(f.open, closer(c))
				}
			case '}', ']':
				f.depth--
				if f.mode == modeValue {
					if c != f.open[len(f.open)-1] {
						// "{]": the value is malformed here, whatever
						// follows; end it now so that the parse error
						// comes at once and the stream resynchronises.
						emit(f.buf, nil)
						f.mode, f.buf = modeIdle, f.buf[:0]
						break
					}
					f.open = f.open[:len(f.open)-1]
				}
				if f.depth > 0 {
					break
				}
				if f.mode == modeSkip {
					emit(nil, errNesting)
				} else {
					emit(f.buf, nil)
				}
				f.mode, f.buf = modeIdle, f.buf[:0]
			}
		}
		if f.mode != modeIdle && f.size > f.max {
			f.buf = nil
			return errTooLarge
		}
	}
	return nil
}

func closer(c byte) byte {
	if c == '{' {
		return '}'
	}
	return ']'
}

// flush ends a top-level token cut by the end of the stream.
func (f *framer) flush(emit func(frame []byte, err error)) {
	if f.mode == modeScalar {
		emit(f.buf, nil)
	}
	f.mode, f.buf = modeIdle, f.buf[:0]
}

// decode parses one framed value into the types QMP handlers see: objects
// as map[string]any, arrays as []any, numbers as json.Number (so 64-bit
// integers keep every digit), strings, booleans and nil. As QEMU's parser
// (qobject/json-parser.c) it refuses duplicate keys; unlike QEMU 7.2 it
// also refuses "\u0000" in strings (an id or path with a NUL is never
// meaningful, and C consumers truncate it) and single-quoted strings (a
// QEMU extension; libxl sends standard JSON).
func decode(frame []byte) (any, error) {
	if !utf8.Valid(frame) {
		return nil, errors.New("JSON parse error, invalid UTF-8 sequence")
	}
	// The scanner behind Unmarshal words syntax errors best ("invalid
	// character 'f' looking for beginning of object key string").
	var raw json.RawMessage
	if err := json.Unmarshal(frame, &raw); err != nil {
		return nil, parseError(err)
	}
	d := json.NewDecoder(bytes.NewReader(frame))
	d.UseNumber()
	v, err := decodeValue(d)
	if err != nil {
		return nil, parseError(err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("JSON parse error, garbage after the value")
	}
	return v, nil
}

func parseError(err error) error {
	if strings.HasPrefix(err.Error(), "JSON parse error") {
		return err
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("JSON parse error, unexpected end of input")
	}
	return fmt.Errorf("JSON parse error, %v", err)
}

func decodeValue(d *json.Decoder) (any, error) {
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch v := t.(type) {
	case json.Delim:
		switch v {
		case '{':
			m := make(map[string]any)
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, errors.New("JSON parse error, key is not a string in object")
				}
				if strings.IndexByte(k, 0) >= 0 {
					return nil, errors.New(`JSON parse error, \u0000 is not supported`)
				}
				if _, dup := m[k]; dup {
					return nil, fmt.Errorf("JSON parse error, duplicate key %q", k)
				}
				val, err := decodeValue(d)
				if err != nil {
					return nil, err
				}
				m[k] = val
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			return m, nil
		case '[':
			l := []any{}
			for d.More() {
				val, err := decodeValue(d)
				if err != nil {
					return nil, err
				}
				l = append(l, val)
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			return l, nil
		}
		return nil, fmt.Errorf("JSON parse error, stray '%c'", rune(v))
	case string:
		if strings.IndexByte(v, 0) >= 0 {
			return nil, errors.New(`JSON parse error, \u0000 is not supported`)
		}
		return v, nil
	default:
		return v, nil
	}
}

// encode marshals v as QEMU prints it: one line, a space after ':' and ','
// (qobject/qjson.c), no HTML escaping, terminated by "\r\n" (QEMU's
// monitor_puts turns "\n" into "\r\n"; libxl splits on it).
func encode(v any) ([]byte, error) {
	var raw bytes.Buffer
	e := json.NewEncoder(&raw)
	e.SetEscapeHTML(false)
	if err := e.Encode(v); err != nil {
		return nil, err
	}
	b := bytes.TrimSuffix(raw.Bytes(), []byte("\n"))
	out := make([]byte, 0, len(b)+len(b)/8+2)
	inStr, esc := false, false
	for _, c := range b {
		out = append(out, c)
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case ':', ',':
			out = append(out, ' ')
		}
	}
	return append(out, '\r', '\n'), nil
}
