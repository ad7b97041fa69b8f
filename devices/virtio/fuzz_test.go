package virtio

import (
	"encoding/binary"
	"errors"
	"testing"

	"godm/devices"
	"godm/memory"
)

// popDev is a device that pops every chain on a kick and returns it with
// no bytes written, recording what it saw.
type popDev struct {
	t      *Transport
	store  [64]Desc
	chains int
	err    error
}

func (d *popDev) Features() uint64              { return FIndirectDesc | FEventIdx }
func (d *popDev) ConfigLen() int                { return 8 }
func (d *popDev) ReadConfig(off int, p []byte)  { clear(p) }
func (d *popDev) WriteConfig(off int, p []byte) {}
func (d *popDev) Reset()                        {}
func (d *popDev) ResetQueue(q *Queue)           {}
func (d *popDev) Notify(q *Queue) {
	var c Chain
	for range 2 * MaxQueueSize {
		q.Lock()
		ok, err := q.Pop(&c, d.store[:])
		var n uint64
		if ok && err == nil {
			for _, s := range c.Segs {
				if s.Write {
					n += uint64(s.Len)
				}
			}
			if n != c.In || len(c.Segs) > len(d.store) {
				d.err = errors.New("chain totals disagree")
			}
			_, err = q.Push(c.Head, 0)
		}
		q.Unlock()
		if err != nil {
			d.t.Fail()
			return
		}
		if !ok {
			return
		}
		d.chains++
	}
	d.err = errors.New("pop did not run dry")
}

const (
	fzMem   = 1 << 20
	fzDesc  = 0x1000
	fzAvail = 0x3000
	fzUsed  = 0x4000
)

func newFuzzRig(t testing.TB, size uint16) (*Transport, *popDev, []byte, *memory.MapCache) {
	mem := make([]byte, fzMem)
	fm := memory.FromBytes(mem)
	fm.SetHole(0x80, true, nil) // a hole at 0x80000
	mc, err := memory.NewMapCache(fm, memory.MapCacheConfig{BucketShift: 12})
	if err != nil {
		t.Fatal(err)
	}
	d := &popDev{}
	tr, err := New(Config{DeviceID: 99, PCIDeviceID: 0x10ff, Queues: 1, QueueSize: 128, Vectors: 2, Memory: mc, Device: d})
	if err != nil {
		t.Fatal(err)
	}
	d.t = tr
	t.Cleanup(func() { tr.Close(); mc.Close() })
	w := func(off uint64, size uint8, v uint64) {
		tr.ModernRegs().Write(devices.Access{Offset: off, Size: size}, v)
	}
	w(cGFSelect, 4, 1)
	w(cGF, 4, 1)
	w(cGFSelect, 4, 0)
	w(cGF, 4, FIndirectDesc|FEventIdx)
	w(cQSize, 2, uint64(size))
	w(cQDescLo, 4, fzDesc)
	w(cQAvailLo, 4, fzAvail)
	w(cQUsedLo, 4, fzUsed)
	w(cQEnable, 2, 1)
	w(cStatus, 1, 0xf)
	return tr, d, mem, mc
}

// FuzzVirtqueue feeds the descriptor table, the avail ring and an
// indirect table area from the input, kicks, and checks that the walk
// ends (bounded), that every chain's totals add up and that the used
// ring never advances beyond what was made available.
func FuzzVirtqueue(f *testing.F) {
	seed := make([]byte, 16*8+8)
	binary.LittleEndian.PutUint64(seed[0:], 0x10000)
	binary.LittleEndian.PutUint32(seed[8:], 16)
	binary.LittleEndian.PutUint16(seed[12:], 1)
	binary.LittleEndian.PutUint16(seed[14:], 1)
	binary.LittleEndian.PutUint64(seed[16:], 0x20000)
	binary.LittleEndian.PutUint32(seed[24:], 1)
	binary.LittleEndian.PutUint16(seed[28:], 2)
	f.Add(uint8(8), uint16(1), seed)
	ind := make([]byte, 16*8+8)
	binary.LittleEndian.PutUint64(ind[0:], 0x5000)
	binary.LittleEndian.PutUint32(ind[8:], 32)
	binary.LittleEndian.PutUint16(ind[12:], 4)
	f.Add(uint8(8), uint16(1), ind)
	f.Add(uint8(3), uint16(200), []byte{})
	f.Fuzz(func(t *testing.T, size uint8, avail uint16, data []byte) {
		sz := uint16(size)%128 + 1
		tr, d, _, mc := newFuzzRig(t, sz)
		put := func(a uint64, p []byte) {
			if err := mc.Write(memory.GPA(a), p); err != nil {
				t.Fatal(err)
			}
		}
		// The table from the input, then the avail ring: heads from the
		// input's tail, the index given.
		tbl := make([]byte, int(sz)*descSize)
		copy(tbl, data)
		put(fzDesc, tbl)
		// The indirect area at 0x5000 gets the same bytes.
		put(0x5000, data[:min(len(data), 0x1000)])
		ring := make([]byte, 4+2*int(sz)+2)
		binary.LittleEndian.PutUint16(ring[2:], avail)
		for i := range int(sz) {
			if j := len(data) - 1 - i; j >= 0 {
				binary.LittleEndian.PutUint16(ring[4+2*i:], uint16(data[j])%(sz+2))
			}
		}
		put(fzAvail, ring)
		tr.ModernRegs().Write(devices.Access{Offset: notifyOff, Size: 2}, 0)
		if d.err != nil {
			t.Fatal(d.err)
		}
		var u [2]byte
		if err := mc.Read(fzUsed+2, u[:]); err != nil {
			t.Fatal(err)
		}
		used := binary.LittleEndian.Uint16(u[:])
		if int(used) != d.chains || (avail <= sz && used > avail) {
			t.Fatalf("used %d after %d chains (avail %d)", used, d.chains, avail)
		}
		if !tr.Broken() && avail <= sz && used != avail {
			t.Fatalf("not broken, yet %d of %d chains used", used, avail)
		}
	})
}

// FuzzRegisters writes and reads the legacy and modern registers in any
// order; the device must stay consistent (a reset clears everything).
func FuzzRegisters(f *testing.F) {
	f.Add([]byte{0, 18, 1, 3, 0, 8, 4, 0x10, 1, 0x14, 1, 0xf})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, _, _, _ := newFuzzRig(t, 8)
		for len(data) >= 4 {
			bar, off, size, v := data[0]%3, uint64(data[1]), uint8(1)<<(data[2]%4), uint64(data[3])*0x01010101
			data = data[4:]
			a := devices.Access{Offset: off, Size: size}
			switch bar {
			case 0:
				tr.LegacyRegs().Write(a, v)
				tr.LegacyRegs().Read(a)
			case 1:
				a.Offset = off | uint64(data0(data))<<12
				tr.ModernRegs().Write(a, v)
				tr.ModernRegs().Read(a)
			case 2:
				tr.ModernRegs().Read(devices.Access{Offset: notifyOff + off, Size: 2})
			}
		}
		tr.Reset()
		if tr.Status() != 0 || tr.Broken() || tr.Negotiated() != 0 {
			t.Fatal("reset left state")
		}
		for _, q := range tr.queues {
			if q.dr != nil || q.enabled {
				t.Fatal("reset left a queue enabled or pinned")
			}
		}
	})
}

func data0(p []byte) byte {
	if len(p) == 0 {
		return 0
	}
	return p[0] % 4
}
