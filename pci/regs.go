package pci

// Type 0 configuration header offsets (PCI Local Bus 3.0 §6.1, figure 6-1).
const (
	RegVendorID      = 0x00
	RegDeviceID      = 0x02
	RegCommand       = 0x04
	RegStatus        = 0x06
	RegRevision      = 0x08
	RegClass         = 0x09 // programming interface; subclass at 0x0a, base class at 0x0b
	RegCacheLineSize = 0x0c
	RegLatencyTimer  = 0x0d
	RegHeaderType    = 0x0e
	RegBAR0          = 0x10
	RegSubsystemVID  = 0x2c
	RegSubsystemID   = 0x2e
	RegROM           = 0x30
	RegCapabilities  = 0x34
	RegInterruptLine = 0x3c
	RegInterruptPin  = 0x3d
)

// Sizes of the configuration spaces.
const (
	// ConfigSize is the configuration space of a conventional function.
	ConfigSize = 256
	// ExtendedConfigSize is the configuration space of a function with
	// PCI Express extended configuration space.
	ExtendedConfigSize = 4096
	// headerSize is the size of the type 0 header; device-specific
	// registers and capabilities live above it.
	headerSize = 0x40
)

// Command register bits (PCI Local Bus 3.0 §6.2.2).
const (
	CommandIO          = 1 << 0
	CommandMemory      = 1 << 1
	CommandMaster      = 1 << 2
	CommandParity      = 1 << 6
	CommandSERR        = 1 << 8
	CommandINTxDisable = 1 << 10
	// commandWritable is QEMU's command wmask (pci_init_cmd_mask and
	// pci_init_wmask, hw/pci/pci.c; 0x0507 read back from QEMU 7.2).
	commandWritable       = CommandIO | CommandMemory | CommandMaster | CommandSERR | CommandINTxDisable
	statusINTx            = 1 << 3 // Interrupt Status, read-only (§6.2.3)
	statusCapList         = 1 << 4
	statusWriteOneToClear = 0xf900 // parity, signalled/received aborts, SERR, detected parity (§6.2.3)
)

// Header type register (§6.2.1).
const headerMultiFunction = 0x80

// BAR low bits (§6.2.5.1).
const (
	barIOSpace      = 1 << 0
	barMem64        = 2 << 1
	barPrefetchable = 1 << 3
	romEnable       = 1 << 0
	numBARs         = 6
	romIndex        = numBARs // index of the expansion ROM in Device.bars
	minIOBARSize    = 4
	minMemBARSize   = 16
	minROMSize      = 2048
)

// Capability IDs (PCI Local Bus 3.0 appendix H).
const (
	CapPowerManagement = 0x01
	CapMSI             = 0x05
	CapVendor          = 0x09
	CapPCIExpress      = 0x10
	CapMSIX            = 0x11
)

// MSI capability layout (§6.8.1).
const (
	msiControl       = 2
	msiEnable        = 1 << 0
	msiMMCShift      = 1 // Multiple Message Capable, bits 3:1
	msiMMEShift      = 4 // Multiple Message Enable, bits 6:4
	msi64Bit         = 1 << 7
	msiPerVectorMask = 1 << 8
	msiAddrLo        = 4
)

// MSI-X capability and table layout (§6.8.2).
const (
	msixControl      = 2
	msixTable        = 4
	msixPBA          = 8
	msixCapSize      = 12
	msixEnable       = 1 << 15
	msixFunctionMask = 1 << 14
	msixEntrySize    = 16
	msixEntryAddrLo  = 0
	msixEntryAddrHi  = 4
	msixEntryData    = 8
	msixEntryControl = 12
	msixEntryMasked  = 1 << 0
	// MaxMSIXVectors is the largest table the 11-bit Table Size field allows.
	MaxMSIXVectors = 2048
)
