package i8042_test

import (
	"fmt"

	"godm/devices"
	"godm/devices/i8042"
)

// The controller self-test and a keyboard reset, as a BIOS does them, then
// the guest's reboot through the reset pulse.
func Example() {
	pio := devices.NewSpace("pio")
	c := i8042.New(i8042.Config{Reset: i8042.ResetFunc(func() { fmt.Println("reboot requested") })})
	if err := i8042.Register(pio, c); err != nil {
		panic(err)
	}
	pio.Write(i8042.StatusPort, 1, 0, 0xaa)
	fmt.Printf("self test %#x\n", pio.Read(i8042.DataPort, 1, 0))
	pio.Write(i8042.DataPort, 1, 0, 0xff)
	fmt.Printf("keyboard %#x %#x\n", pio.Read(i8042.DataPort, 1, 0), pio.Read(i8042.DataPort, 1, 0))
	pio.Write(i8042.StatusPort, 1, 0, 0xfe)
	// Output:
	// self test 0x55
	// keyboard 0xfa 0xaa
	// reboot requested
}
