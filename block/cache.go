package block

// tableCache holds whole metadata clusters (L2 tables, refcount blocks)
// in a fixed number of preallocated slots, evicted round-robin (clock
// with a reference bit). The owner's lock protects it.
type tableCache struct {
	off  []int64 // host offset per slot; -1 free
	data [][]byte
	ref  []bool
	idx  map[int64]int
	hand int
}

func newTableCache(slots int, size int) *tableCache {
	c := &tableCache{off: make([]int64, slots), data: make([][]byte, slots), ref: make([]bool, slots), idx: make(map[int64]int, slots)}
	// One arena: large allocations come from fresh, lazily-zeroed pages,
	// so slots cost memory only once used.
	arena := alignedBuf(slots*size, 4096)
	for i := range c.off {
		c.off[i] = -1
		c.data[i] = arena[i*size : (i+1)*size : (i+1)*size]
	}
	return c
}

func (c *tableCache) get(off int64) []byte {
	i, ok := c.idx[off]
	if !ok {
		return nil
	}
	c.ref[i] = true
	return c.data[i]
}

// victim frees a slot and returns it; the caller fills data[i] and calls
// insert.
func (c *tableCache) victim() int {
	for {
		i := c.hand
		c.hand = (c.hand + 1) % len(c.off)
		if c.ref[i] {
			c.ref[i] = false
			continue
		}
		if c.off[i] >= 0 {
			delete(c.idx, c.off[i])
			c.off[i] = -1
		}
		return i
	}
}

func (c *tableCache) insert(i int, off int64) {
	c.off[i] = off
	c.ref[i] = true
	c.idx[off] = i
}

func (c *tableCache) drop(off int64) {
	if i, ok := c.idx[off]; ok {
		delete(c.idx, off)
		c.off[i] = -1
		c.ref[i] = false
	}
}
