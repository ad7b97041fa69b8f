package evtchn

import (
	"encoding/binary"
	"testing"

	"godm/hyp/internal/kerneltest"
	"godm/hyp/kernel"
)

// FuzzPending feeds arbitrary device answers (bytes and claimed counts)
// to Pending: it returns whole ports equal to the bytes read, or an
// error, and never panics or reports more ports than fit.
func FuzzPending(f *testing.F) {
	f.Add([]byte{17, 0, 0, 0}, 4, 4)
	f.Add([]byte{1, 0, 0}, 3, 4)
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 12, 1)
	f.Add([]byte{}, -1, 2)
	f.Fuzz(func(t *testing.T, data []byte, claim, bufLen int) {
		if bufLen < 0 || bufLen > 64 {
			return
		}
		k := kerneltest.New()
		h, err := Open(k)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		k.Read = func(dev kernel.Device, p []byte) (int, error) {
			copy(p, data)
			return claim, nil
		}
		buf := make([]Port, bufLen)
		n, err := h.Pending(buf)
		if err != nil {
			return
		}
		if n < 0 || n > bufLen || n*portSize != claim && bufLen > 0 {
			t.Fatalf("Pending = %d for a claimed %d bytes into %d ports", n, claim, bufLen)
		}
		for i := 0; i < n && (i+1)*portSize <= len(data); i++ {
			if want := Port(binary.LittleEndian.Uint32(data[i*portSize:])); buf[i] != want {
				t.Fatalf("port %d = %d, want %d", i, buf[i], want)
			}
		}
	})
}
