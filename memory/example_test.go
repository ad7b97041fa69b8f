package memory_test

import (
	"errors"
	"fmt"

	"godm/memory"
)

func ExampleMapCache() {
	ram := make([]byte, 4<<20) // a 4 MiB guest
	fake := memory.FromBytes(ram)
	fake.SetHole(0x200, true, nil) // the page at 2 MiB is not populated

	// In production the mapper adapts hyp/foreign:
	//	memory.MapperFunc(func(gfns []uint64, w bool) (memory.Mapping, error) {
	//		m, err := foreign.Map(priv, dom, w, gfns)
	//		if err != nil {
	//			return nil, err
	//		}
	//		return m, nil
	//	})
	c, err := memory.NewMapCache(fake, memory.MapCacheConfig{})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	_ = c.Write(0x1000, []byte("hello"))
	p := make([]byte, 5)
	_ = c.Read(0x1000, p)
	fmt.Println(string(p))

	err = c.Read(0x200000, p)
	fmt.Println(errors.Is(err, memory.ErrUnmapped))

	// A DMA pins its buffer, so Invalidate cannot unmap it under the
	// transfer, and releases it when done.
	r, err := c.Pin(0x1000, 5)
	if err != nil {
		panic(err)
	}
	c.Invalidate()
	fmt.Println(string(r.Segments()[0]))
	r.Release()
	// Output:
	// hello
	// true
	// hello
}
