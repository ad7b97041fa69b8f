package qmp

import (
	"bytes"
	"reflect"
	"testing"
)

type frameEvent struct {
	frame string
	err   string
}

func runFramer(in []byte, chunk int) ([]frameEvent, bool) {
	f := framer{max: 256, maxDepth: 8}
	var out []frameEvent
	emit := func(frame []byte, err error) {
		e := frameEvent{frame: string(frame)}
		if err != nil {
			e.err = err.Error()
		}
		out = append(out, e)
	}
	for len(in) > 0 {
		n := min(chunk, len(in))
		if f.feed(in[:n], emit) != nil {
			return out, true
		}
		in = in[n:]
	}
	f.flush(emit)
	return out, false
}

// FuzzDecoder feeds arbitrary client bytes to the request framer and
// decoder: no panic, no frame over the bound, the same frames however the
// stream is split into reads, and every value that decodes re-encodes to
// text that decodes to the same value.
func FuzzDecoder(f *testing.F) {
	for _, s := range []string{
		`{"execute":"qmp_capabilities","id":1}` + "\r\n",
		`{"execute":"device_add","arguments":{"driver":"xen-pci-passthrough","id":"pci-pt-03_00.0","hostaddr":"0000:03:00.0","permissive":true},"id":2}`,
		`{"a":[}`, `]]]{{{`, `"str" 42 true [1,2] {"x":"}{"}`, `{"k":"\u0000"}`, `{"k":1,"k":2}`, "\xff{}", `[[[[[[[[[[[]]]]]]]]]]]`,
		`{"s":"a\"b\\"}`, `{"n":18446744073709551615e400}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, tooLargeWhole := runFramer(in, len(in)+1)
		bytewise, tooLargeBytes := runFramer(in, 1)
		if tooLargeWhole != tooLargeBytes || !reflect.DeepEqual(whole, bytewise) {
			t.Fatalf("framing depends on read sizes:\n%q %v\n%q %v", whole, tooLargeWhole, bytewise, tooLargeBytes)
		}
		for _, e := range whole {
			if len(e.frame) > 256 {
				t.Fatalf("frame of %d bytes over the bound", len(e.frame))
			}
			if e.err != "" {
				continue
			}
			v, err := decode([]byte(e.frame))
			if err != nil {
				continue
			}
			b, err := encode(v)
			if err != nil {
				t.Fatalf("encode(%#v): %v", v, err)
			}
			if !bytes.HasSuffix(b, []byte("\r\n")) {
				t.Fatalf("encoded without \\r\\n: %q", b)
			}
			w, err := decode(bytes.TrimSuffix(b, []byte("\r\n")))
			if err != nil || !reflect.DeepEqual(v, w) {
				t.Fatalf("round trip of %q via %q: %#v, %v", e.frame, b, w, err)
			}
		}
	})
}
