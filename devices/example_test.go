package devices_test

import (
	"fmt"

	"godm/devices"
)

// scratch is a one-byte scratch register (like the ISA port 0x80 POST
// code register).
type scratch struct{ v byte }

func (s *scratch) Read(devices.Access) uint64       { return uint64(s.v) }
func (s *scratch) Write(_ devices.Access, v uint64) { s.v = byte(v) }

func ExampleSpace_Register() {
	bus := devices.NewBus()
	if err := bus.PIO.Register(0x80, 1, devices.Locked(&scratch{})); err != nil {
		panic(err)
	}
	bus.PIO.Write(0x80, 1, 0, 0x42)
	fmt.Printf("%#x\n", bus.PIO.Read(0x80, 1, 0))
	fmt.Printf("%#x\n", bus.PIO.Read(0x80, 2, 0)) // does not fit in the range: a miss
	fmt.Println(bus.PIO.Stats().ReadMisses)
	// Output:
	// 0x42
	// 0xffff
	// 1
}

func ExampleConfigSpace() {
	c := devices.NewConfigSpace()
	if err := c.Register(devices.NewSBDF(0, 0, 3, 0), devices.Locked(&scratch{})); err != nil {
		panic(err)
	}
	fmt.Printf("%#x\n", c.Read(devices.NewSBDF(0, 0, 4, 0), 0, 4, 0)) // no device: master abort
	fmt.Println(devices.NewSBDF(0, 0, 3, 0))
	// Output:
	// 0xffffffff
	// 0000:00:03.0
}
