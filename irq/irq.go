package irq

// Line is a level-triggered interrupt line (an ISA IRQ or a PCI INTx pin).
type Line interface {
	// SetLevel asserts (true) or deasserts (false) the line.
	// Implementations forward only changes of level to the hypervisor.
	SetLevel(high bool)
}

// MSISender delivers message-signalled interrupts.
type MSISender interface {
	// SendMSI delivers one MSI with the given address and data.
	SendMSI(addr uint64, data uint32)
}

// LineFunc adapts a function to Line.
type LineFunc func(high bool)

// SetLevel implements Line.
func (f LineFunc) SetLevel(high bool) { f(high) }

// MSIFunc adapts a function to MSISender.
type MSIFunc func(addr uint64, data uint32)

// SendMSI implements MSISender.
func (f MSIFunc) SendMSI(addr uint64, data uint32) { f(addr, data) }
