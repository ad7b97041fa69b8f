package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts is safe to use:
// buffers decode to their length, masking any input stays in bounds, and
// pointer targets resolve or are nil.
func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	if files, _ := filepath.Glob(filepath.Join(Dir(), "*.json")); len(files) > 0 {
		for _, p := range files[:min(len(files), 8)] {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fx, err := Parse(data)
		if err != nil {
			return
		}
		for i := range fx.Events {
			ev := &fx.Events[i]
			bufs := []*Buffer{ev.Arg}
			for j := range ev.Buffers {
				bufs = append(bufs, &ev.Buffers[j])
			}
			for _, b := range bufs {
				if b == nil {
					continue
				}
				if b.Hex != "" && len(b.Bytes()) != b.Len {
					t.Fatalf("%s: %d bytes, len %d", b.Name, len(b.Bytes()), b.Len)
				}
				_ = b.Mask(make([]byte, b.Len))
				_ = b.Mask(nil)
				_ = b.Compare(make([]byte, b.Len/2))
				for _, p := range b.Ptrs {
					_ = ev.Target(p)
				}
			}
			_ = ev.DataBytes()
		}
	})
}
