package ide

// Identity (QEMU hw/ide/piix.c: piix3-ide, PCI_DEVICE_ID_INTEL_82371SB_1;
// class IDE with programming interface 0x80, "legacy ATA mode").
const (
	VendorID = 0x8086
	DeviceID = 0x7010
	Class    = 0x010180

	// Slot and Function place the controller at 00:01.1.
	Slot     = 1
	Function = 1
)

// Legacy port blocks and ISA interrupts of the two channels (QEMU
// hw/ide/piix.c port_info).
var (
	cmdBase = [2]uint64{0x1f0, 0x170}
	ctlPort = [2]uint64{0x3f6, 0x376}
	isaIRQ  = [2]uint8{14, 15}
)

// IRQ returns channel ch's ISA interrupt (14 or 15).
func IRQ(ch int) uint8 { return isaIRQ[ch&1] }

// Sizes (QEMU hw/ide/internal.h).
const (
	sectorSize = 512
	// ioBufLen is IDE_DMA_BUF_SECTORS*512 + 4, the PIO buffer.
	ioBufLen = 256*sectorSize + 4
	// maxMult is MAX_MULT_SECTORS.
	maxMult = 16
	// prdPage bounds the PRD table: QEMU stops after one page of
	// descriptors (hw/ide/pci.c BMDMA_PAGE_SIZE).
	prdPage = 4096
	maxPRDs = prdPage / 8
	// dmaChunk is the most one queued DMA request moves.
	dmaChunk = 128 << 10
	// cdMaxSectors is CD_MAX_SECTORS: 80 minutes of 2 KiB frames in
	// 512-byte sectors; larger media are DVDs.
	cdMaxSectors = 80 * 60 * 75 * 2048 / 512
	// atapiPacket is the ATAPI command packet length.
	atapiPacket = 12
)

// Status register bits.
const (
	stERR   = 0x01
	stDRQ   = 0x08
	stSEEK  = 0x10
	stREADY = 0x40
	stBUSY  = 0x80
)

// Error register bits.
const (
	errABRT = 0x04
	errMC   = 0x20
)

// Device control register bits.
const (
	ctlNIEN = 0x02
	ctlSRST = 0x04
	ctlHOB  = 0x80
)

// Device/head register bits.
const (
	devHS       = 0x0f
	devSelect   = 0x10
	devLBA      = 0x40
	devAlwaysOn = 0xa0
)

// Bus-master registers.
const (
	bmCmdStart  = 0x01
	bmCmdMask   = 0x09
	bmStActive  = 0x01
	bmStInt     = 0x04
	bmStW1C     = 0x06
	bmStKept    = 0x60
	prdEOT      = 0x80000000
	prdSizeMask = 0xfffe
)

// ATAPI interrupt reason bits (in the sector count register).
const (
	reasonCD = 0x01
	reasonIO = 0x02
)

// SCSI sense keys and additional sense codes (QEMU include/scsi/constants.h).
const (
	senseNone           = 0x00
	senseNotReady       = 0x02
	senseIllegalRequest = 0x05
	senseUnitAttention  = 0x06

	ascIllegalOpcode      = 0x20
	ascLBAOutOfRange      = 0x21
	ascInvFieldInCmd      = 0x24
	ascMediumMayChanged   = 0x28
	ascIncompatibleFormat = 0x30
	ascSavingNotSupported = 0x39
	ascMediumNotPresent   = 0x3a
	ascDataPhaseError     = 0x4b
	ascRemovalPrevented   = 0x53
)

// ATA commands served (QEMU hw/ide/core.c ide_cmd_table; ACS-2 Table B.2).
const (
	cmdDSM              = 0x06
	cmdDeviceReset      = 0x08
	cmdRecalibrate      = 0x10
	cmdRead             = 0x20
	cmdReadOnce         = 0x21
	cmdReadExt          = 0x24
	cmdReadDMAExt       = 0x25
	cmdReadNativeMaxExt = 0x27
	cmdReadMultExt      = 0x29
	cmdWrite            = 0x30
	cmdWriteOnce        = 0x31
	cmdWriteExt         = 0x34
	cmdWriteDMAExt      = 0x35
	cmdWriteMultExt     = 0x39
	cmdWriteVerify      = 0x3c
	cmdVerify           = 0x40
	cmdVerifyOnce       = 0x41
	cmdVerifyExt        = 0x42
	cmdSeek             = 0x70
	cmdDiagnose         = 0x90
	cmdSpecify          = 0x91
	cmdStandbyNow2      = 0x94
	cmdIdleImmediate2   = 0x95
	cmdStandby2         = 0x96
	cmdSetIdle2         = 0x97
	cmdCheckPower2      = 0x98
	cmdSleepNow2        = 0x99
	cmdPacket           = 0xa0
	cmdIdentifyPacket   = 0xa1
	cmdReadMult         = 0xc4
	cmdWriteMult        = 0xc5
	cmdSetMult          = 0xc6
	cmdReadDMA          = 0xc8
	cmdReadDMAOnce      = 0xc9
	cmdWriteDMA         = 0xca
	cmdWriteDMAOnce     = 0xcb
	cmdStandbyNow1      = 0xe0
	cmdIdleImmediate    = 0xe1
	cmdStandby          = 0xe2
	cmdSetIdle1         = 0xe3
	cmdCheckPower1      = 0xe5
	cmdSleepNow1        = 0xe6
	cmdFlushCache       = 0xe7
	cmdFlushCacheExt    = 0xea
	cmdIdentify         = 0xec
	cmdSetFeatures      = 0xef
	cmdSecurityFreeze   = 0xf5
	cmdReadNativeMax    = 0xf8
)
