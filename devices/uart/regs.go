package uart

// Register offsets (PC16550D datasheet, register summary). With LCR.DLAB set,
// offsets 0 and 1 address the divisor latch.
const (
	regRBR = 0 // receiver buffer (read), THR (write), DLL (DLAB)
	regIER = 1 // interrupt enable, DLM (DLAB)
	regIIR = 2 // interrupt identification (read), FCR (write)
	regLCR = 3 // line control
	regMCR = 4 // modem control
	regLSR = 5 // line status
	regMSR = 6 // modem status
	regSCR = 7 // scratch
)

// Size is the length of the UART's register block.
const Size = 8

// IER bits.
const (
	ierRDI  = 0x01 // received data available
	ierTHRI = 0x02 // THR empty
	ierRLSI = 0x04 // receiver line status
	ierMSI  = 0x08 // modem status
	ierMask = 0x0f
)

// IIR values: bit 0 clear means an interrupt is pending; bits 6-7 mirror
// FCR.FE.
const (
	iirNoInt  = 0x01
	iirMSI    = 0x00
	iirTHRI   = 0x02
	iirRDI    = 0x04
	iirRLSI   = 0x06
	iirCTI    = 0x0c // character timeout
	iirIDMask = 0x0e
	iirFIFO   = 0xc0
)

// FCR bits.
const (
	fcrFE     = 0x01 // FIFO enable
	fcrRFR    = 0x02 // receive FIFO reset
	fcrXFR    = 0x04 // transmit FIFO reset
	fcrDMS    = 0x08 // DMA mode select
	fcrITL    = 0xc0 // receive trigger level
	fcrSticky = fcrFE | fcrDMS | fcrITL
)

// LCR bits.
const (
	lcrDLAB   = 0x80
	lcrBreak  = 0x40
	lcrParity = 0x08
	lcrEven   = 0x10
	lcrStop2  = 0x04
	lcrWLS    = 0x03
)

// MCR bits.
const (
	mcrDTR  = 0x01
	mcrRTS  = 0x02
	mcrOUT1 = 0x04
	mcrOUT2 = 0x08
	mcrLoop = 0x10
	mcrMask = 0x1f
)

// LSR bits.
const (
	lsrDR     = 0x01 // data ready
	lsrOE     = 0x02 // overrun
	lsrPE     = 0x04 // parity error
	lsrFE     = 0x08 // framing error
	lsrBI     = 0x10 // break
	lsrTHRE   = 0x20 // THR empty
	lsrTEMT   = 0x40 // transmitter empty
	lsrRXFE   = 0x80 // error in receive FIFO
	lsrIntAny = lsrOE | lsrPE | lsrFE | lsrBI
)

// MSR bits.
const (
	msrDCTS     = 0x01
	msrDDSR     = 0x02
	msrTERI     = 0x04
	msrDDCD     = 0x08
	msrCTS      = 0x10
	msrDSR      = 0x20
	msrRI       = 0x40
	msrDCD      = 0x80
	msrAnyDelta = 0x0f
)

// fifoLen is the depth of the 16550A FIFOs.
const fifoLen = 16

// Defaults after reset, as QEMU's serial_reset sets them: 9600 baud from
// the 1.8432 MHz clock (divisor 12), OUT2 set, CTS/DSR/DCD asserted.
const (
	// DefaultBaudBase is the input clock divided by 16: 1.8432 MHz / 16.
	DefaultBaudBase = 115200
	resetDivisor    = 12
	resetMCR        = mcrOUT2
	resetMSR        = msrDCD | msrDSR | msrCTS
)
