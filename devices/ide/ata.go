package ide

import (
	"encoding/binary"

	"godm/block"
)

// hwVersion is the firmware revision QEMU reports for machines from 2.5
// on (qemu_hw_version).
const hwVersion = "2.5+"

// reset is ide_reset.
func (u *unit) reset() {
	if u.resetReverts {
		u.resetReverts = false
		u.heads, u.secs = u.driveHeads, u.driveSecs
	}
	u.multSectors = maxMult
	u.feature, u.errReg, u.nsector = 0, 0, 0
	u.sector, u.lcyl, u.hcyl = 0, 0, 0
	u.hobFeature, u.hobSector, u.hobNsector, u.hobLcyl, u.hobHcyl = 0, 0, 0, 0, 0
	u.sel = devAlwaysOn
	u.status = stREADY | stSEEK
	u.lba48 = false
	u.CDState.Reset()
	u.packetSize, u.elemSize = 0, 0
	u.bufIndex = 0
	u.atapiDMA = false
	u.ioBufSize = 0
	u.reqNbSectors = 0
	u.dmaCmd = dmaNone
	u.setSignature()
	u.end = endDummy
	u.dummyTransferStop()
}

// setSignature is ide_set_signature.
func (u *unit) setSignature() {
	u.sel &^= devHS
	u.nsector = 1
	u.sector = 1
	switch {
	case u.has && u.kd == CD:
		u.lcyl, u.hcyl = 0x14, 0xeb
	case u.has:
		u.lcyl, u.hcyl = 0, 0
	default:
		u.lcyl, u.hcyl = 0xff, 0xff
	}
}

// dummyTransferStop makes data reads return all-ones (no transfer).
func (u *unit) dummyTransferStop() {
	u.dataPtr, u.dataEnd = 0, 0
	u.buf[0], u.buf[1], u.buf[2], u.buf[3] = 0xff, 0xff, 0xff, 0xff
}

// transferStart is ide_transfer_start: the guest may move size bytes of
// the buffer from off.
func (u *unit) transferStart(off, size int, end endFn) {
	u.dataPtr, u.dataEnd = off, off+size
	if u.status&stERR == 0 {
		u.status |= stDRQ
	}
	u.end = end
}

// transferStop is ide_transfer_stop.
func (u *unit) transferStop() {
	u.end = endStop
	u.dataPtr, u.dataEnd = 0, 0
	u.status &^= stDRQ
}

// abort is ide_abort_command.
func (u *unit) abort() {
	u.transferStop()
	u.status = stREADY | stERR
	u.errReg = errABRT
}

// rwError is ide_rw_error.
func (u *unit) rwError() {
	u.abort()
	u.ch.setIRQ()
}

// diagnostic is cmd_exec_dev_diagnostic; QEMU 7.2 clears the device
// register first (ATA/ATAPI-6: DEV cleared to zero).
func (u *unit) diagnostic() {
	u.sel = devAlwaysOn
	u.setSignature()
	u.errReg = 0x01
	if u.kd == CD && u.has {
		// Packet devices come back with a clear status (ATAPI-6 9.10).
		u.status = 0
		return
	}
	u.status = stREADY | stSEEK
	u.ch.setIRQ()
}

// sector returns the task file's address (ide_get_sector).
func (u *unit) getSector() int64 {
	if u.sel&devLBA != 0 {
		if u.lba48 {
			return int64(u.hobHcyl)<<40 | int64(u.hobLcyl)<<32 | int64(u.hobSector)<<24 |
				int64(u.hcyl)<<16 | int64(u.lcyl)<<8 | int64(u.sector)
		}
		return int64(u.sel&devHS)<<24 | int64(u.hcyl)<<16 | int64(u.lcyl)<<8 | int64(u.sector)
	}
	cyl := int64(u.hcyl)<<8 | int64(u.lcyl)
	return cyl*int64(u.heads)*int64(u.secs) + int64(u.sel&devHS)*int64(u.secs) + int64(u.sector) - 1
}

// setSector writes an address back (ide_set_sector).
func (u *unit) setSector(n int64) {
	if u.sel&devLBA != 0 {
		if u.lba48 {
			u.sector, u.lcyl, u.hcyl = uint8(n), uint8(n>>8), uint8(n>>16)
			u.hobSector, u.hobLcyl, u.hobHcyl = uint8(n>>24), uint8(n>>32), uint8(n>>40)
			return
		}
		u.sel = u.sel&^devHS | uint8(n>>24)&devHS
		u.hcyl, u.lcyl, u.sector = uint8(n>>16), uint8(n>>8), uint8(n)
		return
	}
	hs := int64(u.heads) * int64(u.secs)
	if hs == 0 || u.secs == 0 {
		return
	}
	cyl := n / hs
	r := n % hs
	u.hcyl, u.lcyl = uint8(cyl>>8), uint8(cyl)
	u.sel = u.sel&^devHS | uint8(r/int64(u.secs))&devHS
	u.sector = uint8(r%int64(u.secs)) + 1
}

// rangeOK is ide_sect_range_ok.
func (u *unit) rangeOK(sector int64, n uint64) bool {
	s := uint64(sector)
	return s <= u.nbSectors && n <= u.nbSectors-s
}

// lba48Transform is ide_cmd_lba48_transform: a count of 0 means 256 (or
// 65536 with LBA48).
func (u *unit) lba48Transform(lba48 bool) {
	u.lba48 = lba48
	if !lba48 {
		if u.nsector == 0 {
			u.nsector = 256
		}
		return
	}
	if u.nsector == 0 && u.hobNsector == 0 {
		u.nsector = 65536
		return
	}
	u.nsector = uint32(u.hobNsector)<<8 | u.nsector&0xff
}

// --- command dispatch

const (
	okHD  = 1 << 0
	okCD  = 1 << 1
	okAll = okHD | okCD
	setDS = 1 << 2
)

type ataCmd struct {
	h     func(u *unit, cmd uint8) bool // true: complete now
	flags uint8
}

var ataCmds [256]ataCmd

func init() {
	t := &ataCmds
	t[cmdDeviceReset] = ataCmd{(*unit).cmdDeviceReset, okCD}
	t[cmdRecalibrate] = ataCmd{(*unit).cmdNop, okHD | setDS}
	t[cmdRead] = ataCmd{(*unit).cmdReadPIO, okAll}
	t[cmdReadOnce] = ataCmd{(*unit).cmdReadPIO, okHD}
	t[cmdReadExt] = ataCmd{(*unit).cmdReadPIO, okHD}
	t[cmdReadDMAExt] = ataCmd{(*unit).cmdReadDMA, okHD}
	t[cmdReadNativeMaxExt] = ataCmd{(*unit).cmdReadNativeMax, okHD | setDS}
	t[cmdReadMultExt] = ataCmd{(*unit).cmdReadMultiple, okHD}
	t[cmdWrite] = ataCmd{(*unit).cmdWritePIO, okHD}
	t[cmdWriteOnce] = ataCmd{(*unit).cmdWritePIO, okHD}
	t[cmdWriteExt] = ataCmd{(*unit).cmdWritePIO, okHD}
	t[cmdWriteDMAExt] = ataCmd{(*unit).cmdWriteDMA, okHD}
	t[cmdWriteMultExt] = ataCmd{(*unit).cmdWriteMultiple, okHD}
	t[cmdWriteVerify] = ataCmd{(*unit).cmdWritePIO, okHD}
	t[cmdVerify] = ataCmd{(*unit).cmdVerify, okHD | setDS}
	t[cmdVerifyOnce] = ataCmd{(*unit).cmdVerify, okHD | setDS}
	t[cmdVerifyExt] = ataCmd{(*unit).cmdVerify, okHD | setDS}
	t[cmdSeek] = ataCmd{(*unit).cmdNop, okHD | setDS}
	t[cmdDiagnose] = ataCmd{(*unit).cmdDiagnose, okAll}
	t[cmdSpecify] = ataCmd{(*unit).cmdSpecify, okHD | setDS}
	t[cmdDSM] = ataCmd{(*unit).cmdDSM, okHD}
	for _, c := range []uint8{cmdStandbyNow2, cmdIdleImmediate2, cmdStandby2, cmdSetIdle2, cmdSleepNow2,
		cmdStandbyNow1, cmdIdleImmediate, cmdStandby, cmdSetIdle1, cmdSleepNow1} {
		t[c] = ataCmd{(*unit).cmdNop, okHD}
	}
	t[cmdCheckPower2] = ataCmd{(*unit).cmdCheckPower, okHD | setDS}
	t[cmdCheckPower1] = ataCmd{(*unit).cmdCheckPower, okHD | setDS}
	t[cmdPacket] = ataCmd{(*unit).cmdPacket, okCD}
	t[cmdIdentifyPacket] = ataCmd{(*unit).cmdIdentifyPacket, okCD}
	t[cmdReadMult] = ataCmd{(*unit).cmdReadMultiple, okHD}
	t[cmdWriteMult] = ataCmd{(*unit).cmdWriteMultiple, okHD}
	t[cmdSetMult] = ataCmd{(*unit).cmdSetMultiple, okHD | setDS}
	t[cmdReadDMA] = ataCmd{(*unit).cmdReadDMA, okHD}
	t[cmdReadDMAOnce] = ataCmd{(*unit).cmdReadDMA, okHD}
	t[cmdWriteDMA] = ataCmd{(*unit).cmdWriteDMA, okHD}
	t[cmdWriteDMAOnce] = ataCmd{(*unit).cmdWriteDMA, okHD}
	t[cmdFlushCache] = ataCmd{(*unit).cmdFlush, okAll}
	t[cmdFlushCacheExt] = ataCmd{(*unit).cmdFlush, okHD}
	t[cmdIdentify] = ataCmd{(*unit).cmdIdentify, okAll}
	t[cmdSetFeatures] = ataCmd{(*unit).cmdSetFeatures, okAll | setDS}
	t[cmdSecurityFreeze] = ataCmd{(*unit).cmdSecurityFreeze, okHD | setDS}
	t[cmdReadNativeMax] = ataCmd{(*unit).cmdReadNativeMax, okHD | setDS}
}

// execCmd is ide_exec_cmd.
func (ch *channel) execCmd(v uint8) {
	u := &ch.u[ch.cur]
	if ch.cur != 0 && !u.has {
		return // no such slave
	}
	if u.status&(stBUSY|stDRQ) != 0 && (v != cmdDeviceReset || u.kd != CD) {
		return
	}
	e := ataCmds[v]
	ok := uint8(okHD)
	if u.kd == CD {
		ok = okCD
	}
	if e.h == nil || e.flags&ok == 0 {
		u.abort()
		ch.setIRQ()
		return
	}
	u.status = stREADY | stBUSY
	u.errReg = 0
	if e.h(u, v) {
		u.status &^= stBUSY
		if e.flags&setDS != 0 && u.errReg == 0 {
			u.status |= stSEEK
		}
		ch.setIRQ()
	}
}

func (u *unit) cmdNop(uint8) bool { return true }

func (u *unit) cmdDeviceReset(uint8) bool {
	u.transferStop()
	u.ch.cancelDMA()
	u.reset()
	u.status = 0
	return false
}

func (u *unit) cmdIdentify(uint8) bool {
	if u.has && u.kd != CD {
		u.ataIdentify()
		u.status = stREADY | stSEEK
		u.transferStart(0, 512, endStop)
		u.ch.setIRQ()
		return false
	}
	if u.kd == CD {
		u.setSignature()
	}
	u.abort()
	return true
}

func (u *unit) cmdIdentifyPacket(uint8) bool {
	u.atapiIdentify()
	u.status = stREADY | stSEEK
	u.transferStart(0, 512, endStop)
	u.ch.setIRQ()
	return false
}

func (u *unit) cmdDiagnose(uint8) bool {
	u.diagnostic()
	return false
}

// cmdSpecify is INITIALIZE DEVICE PARAMETERS: the logical CHS geometry
// (heads from the device register, sectors from the count), which a
// reset keeps unless SET FEATURES 0xcc asked for power-on defaults.
func (u *unit) cmdSpecify(uint8) bool {
	if u.has && u.kd != CD {
		u.heads = uint32(u.sel&devHS) + 1
		u.secs = u.nsector & 0xff
		u.ch.setIRQ()
	} else {
		u.abort()
	}
	return true
}

// cmdDSM is DATA SET MANAGEMENT: TRIM, its LBA range entries by DMA.
func (u *unit) cmdDSM(uint8) bool {
	if u.feature == 0x01 && u.has {
		u.sectorStartDMA(dmaTrim)
		return false
	}
	u.abort()
	return true
}

func (u *unit) cmdVerify(cmd uint8) bool {
	u.lba48Transform(cmd == cmdVerifyExt)
	return true
}

func (u *unit) cmdSetMultiple(uint8) bool {
	n := u.nsector & 0xff
	if n != 0 && (n > maxMult || n&(n-1) != 0) {
		u.abort()
	} else {
		u.multSectors = int(n)
	}
	return true
}

func (u *unit) cmdReadMultiple(cmd uint8) bool {
	if !u.has || u.multSectors == 0 {
		u.abort()
		return true
	}
	u.lba48Transform(cmd == cmdReadMultExt)
	u.reqNbSectors = u.multSectors
	u.sectorRead()
	return false
}

func (u *unit) cmdWriteMultiple(cmd uint8) bool {
	if !u.has || u.multSectors == 0 {
		u.abort()
		return true
	}
	u.lba48Transform(cmd == cmdWriteMultExt)
	u.reqNbSectors = u.multSectors
	n := min(int(u.nsector), u.reqNbSectors)
	u.status = stSEEK | stREADY
	u.transferStart(0, 512*n, endSectorWrite)
	return false
}

func (u *unit) cmdReadPIO(cmd uint8) bool {
	if u.kd == CD {
		u.setSignature() // ATA-4 8.27.5.2, as QEMU
		u.abort()
		return true
	}
	if !u.has {
		u.abort()
		return true
	}
	u.lba48Transform(cmd == cmdReadExt)
	u.reqNbSectors = 1
	u.sectorRead()
	return false
}

func (u *unit) cmdWritePIO(cmd uint8) bool {
	if !u.has {
		u.abort()
		return true
	}
	u.lba48Transform(cmd == cmdWriteExt)
	u.reqNbSectors = 1
	u.status = stSEEK | stREADY
	u.transferStart(0, 512, endSectorWrite)
	return false
}

func (u *unit) cmdReadDMA(cmd uint8) bool {
	if !u.has {
		u.abort()
		return true
	}
	u.lba48Transform(cmd == cmdReadDMAExt)
	u.sectorStartDMA(dmaRead)
	return false
}

func (u *unit) cmdWriteDMA(cmd uint8) bool {
	if !u.has {
		u.abort()
		return true
	}
	u.lba48Transform(cmd == cmdWriteDMAExt)
	u.sectorStartDMA(dmaWrite)
	return false
}

func (u *unit) cmdFlush(uint8) bool {
	u.flush()
	return false
}

func (u *unit) cmdReadNativeMax(cmd uint8) bool {
	if u.nbSectors == 0 {
		u.abort()
		return true
	}
	u.lba48Transform(cmd == cmdReadNativeMaxExt)
	u.setSector(int64(u.nbSectors) - 1)
	return true
}

func (u *unit) cmdCheckPower(uint8) bool {
	u.nsector = 0xff // active or idle
	return true
}

func (u *unit) cmdSecurityFreeze(uint8) bool {
	u.nsector = 0 // QEMU's CFA_WEAR_LEVEL answer, which Windows 8 needs
	return true
}

func (u *unit) cmdSetFeatures(uint8) bool {
	if !u.has {
		u.abort()
		return true
	}
	id := u.identify[:]
	switch u.feature {
	case 0x02: // write cache enable
		u.wcache = true
		put16(id, 85, 1<<14|1<<5|1)
		return true
	case 0x82: // write cache disable
		u.wcache = false
		put16(id, 85, 1<<14|1)
		u.flush()
		return false
	case 0xcc: // revert to power-on defaults on reset
		u.resetReverts = true
		return true
	case 0x66:
		u.resetReverts = false
		return true
	case 0xaa, 0x55, 0x05, 0x85, 0x69, 0x67, 0x96, 0x9a, 0x42, 0xc2:
		return true
	case 0x03: // set transfer mode
		val := uint16(u.nsector & 7)
		switch u.nsector >> 3 {
		case 0, 1: // PIO
			put16(id, 62, 0x07)
			put16(id, 63, 0x07)
			put16(id, 88, 0x3f)
		case 2: // single-word DMA
			put16(id, 62, 0x07|1<<(val+8))
			put16(id, 63, 0x07)
			put16(id, 88, 0x3f)
		case 4: // multiword DMA
			put16(id, 62, 0x07)
			put16(id, 63, 0x07|1<<(val+8))
			put16(id, 88, 0x3f)
		case 8: // UDMA
			put16(id, 62, 0x07)
			put16(id, 63, 0x07)
			put16(id, 88, 0x3f|1<<(val+8))
		default:
			u.abort()
		}
		return true
	}
	u.abort()
	return true
}

// --- PIO data path (synchronous: see the package comment)

// sectorRead is ide_sector_read with its completion.
func (u *unit) sectorRead() {
	u.status = stREADY | stSEEK
	u.errReg = 0
	sector := u.getSector()
	n := int(u.nsector)
	if n == 0 {
		u.transferStop()
		return
	}
	n = min(n, u.reqNbSectors)
	if !u.rangeOK(sector, uint64(n)) || u.drv == nil {
		u.rwError()
		return
	}
	if err := u.drv.ReadAt(u.buf[:n*sectorSize], sector*sectorSize); err != nil {
		u.rwError()
		return
	}
	u.setSector(u.getSector() + int64(n))
	u.nsector -= uint32(n)
	u.transferStart(0, n*sectorSize, endSectorRead)
	u.ch.setIRQ()
}

// sectorWrite is ide_sector_write with its completion.
func (u *unit) sectorWrite() {
	u.status = stREADY | stSEEK
	sector := u.getSector()
	n := min(int(u.nsector), u.reqNbSectors)
	if !u.rangeOK(sector, uint64(n)) || u.drv == nil {
		u.rwError()
		return
	}
	u.wv[0] = u.buf[:n*sectorSize]
	err := u.drv.WriteV(u.wv[:], sector*sectorSize, !u.wcache)
	u.wv[0] = nil
	if err != nil {
		u.rwError()
		return
	}
	u.nsector -= uint32(n)
	u.setSector(u.getSector() + int64(n))
	if u.nsector == 0 {
		u.transferStop()
	} else {
		u.transferStart(0, min(int(u.nsector), u.reqNbSectors)*sectorSize, endSectorWrite)
	}
	u.ch.setIRQ()
}

// --- IDENTIFY

func put16(b []byte, word int, v uint16) { binary.LittleEndian.PutUint16(b[2*word:], v) }

// padStr writes s into words as ATA strings are stored: space-padded,
// the two bytes of each word swapped.
func padStr(b []byte, word, n int, s string) {
	p := b[2*word : 2*word+n]
	for i := range n {
		c := byte(' ')
		if i < len(s) {
			c = s[i]
		}
		p[i^1] = c
	}
}

// ataIdentify is ide_identify (the page is computed once and kept, as
// QEMU keeps identify_data; SET FEATURES edits it).
func (u *unit) ataIdentify() {
	if !u.identifySet {
		ATAIdentify(u.identify[:], Identity{
			Cyls: u.cyls, Heads: u.heads, Secs: u.secs, Sectors: u.nbSectors,
			Serial: u.serial, Model: u.model, MultSectors: u.multSectors, WriteCache: u.wcache,
		})
		u.identifySet = true
	}
	copy(u.buf, u.identify[:])
}

// Identity is what an ATA IDENTIFY DEVICE page describes; the IDE and
// AHCI controllers share the page.
type Identity struct {
	Cyls, Heads, Secs uint32 // the current logical geometry
	Sectors           uint64 // 512-byte sectors of the medium
	Serial, Model     string
	MultSectors       int // SET MULTIPLE's setting (0: none)
	WriteCache        bool
	// NCQQueues is the NCQ queue depth (AHCI: 32; 0 for IDE).
	NCQQueues int
}

// ATAIdentify fills p (at least 512 bytes) with the IDENTIFY DEVICE page
// QEMU's ide_identify builds (hw/ide/core.c).
func ATAIdentify(p []byte, id Identity) {
	p = p[:512]
	clear(p)
	put16(p, 0, 0x0040)
	put16(p, 1, uint16(id.Cyls))
	put16(p, 3, uint16(id.Heads))
	put16(p, 4, uint16(512*id.Secs))
	put16(p, 5, 512)
	put16(p, 6, uint16(id.Secs))
	padStr(p, 10, 20, id.Serial)
	put16(p, 20, 3)
	put16(p, 21, 512)
	put16(p, 22, 4)
	padStr(p, 23, 8, hwVersion)
	padStr(p, 27, 40, id.Model)
	put16(p, 47, 0x8000|maxMult)
	put16(p, 48, 1)
	put16(p, 49, 1<<11|1<<9|1<<8)
	put16(p, 51, 0x200)
	put16(p, 52, 0x200)
	put16(p, 53, 1|1<<1|1<<2)
	put16(p, 54, uint16(id.Cyls))
	put16(p, 55, uint16(id.Heads))
	put16(p, 56, uint16(id.Secs))
	old := id.Cyls * id.Heads * id.Secs
	put16(p, 57, uint16(old))
	put16(p, 58, uint16(old>>16))
	if id.MultSectors != 0 {
		put16(p, 59, 0x100|uint16(id.MultSectors))
	}
	put16(p, 62, 0x07)
	put16(p, 63, 0x07)
	put16(p, 64, 0x03)
	put16(p, 65, 120)
	put16(p, 66, 120)
	put16(p, 67, 120)
	put16(p, 68, 120)
	put16(p, 80, 0xf0)
	put16(p, 81, 0x16)
	put16(p, 82, 1<<14|1<<5|1)
	put16(p, 83, 1<<14|1<<13|1<<12|1<<10)
	put16(p, 84, 1<<14)
	if id.WriteCache {
		put16(p, 85, 1<<14|1<<5|1)
	} else {
		put16(p, 85, 1<<14|1)
	}
	put16(p, 86, 1<<13|1<<12|1<<10)
	put16(p, 87, 1<<14)
	put16(p, 88, 0x3f|1<<13)
	if id.NCQQueues > 0 {
		put16(p, 75, uint16(id.NCQQueues-1))
		put16(p, 76, 1<<8) // NCQ supported
	}
	put16(p, 69, 1<<14) // deterministic TRIM (discard_granularity 512)
	put16(p, 93, 1|1<<14|0x2000)
	put16(p, 169, 1)      // TRIM supported
	put16(p, 106, 0x6000) // physical block = logical block (512)
	lba28 := min(id.Sectors, 1<<28-1)
	put16(p, 60, uint16(lba28))
	put16(p, 61, uint16(lba28>>16))
	put16(p, 100, uint16(id.Sectors))
	put16(p, 101, uint16(id.Sectors>>16))
	put16(p, 102, uint16(id.Sectors>>32))
	put16(p, 103, uint16(id.Sectors>>48))
}

// atapiIdentify is ide_atapi_identify.
func (u *unit) atapiIdentify() {
	if !u.identifySet {
		ATAPIIdentify(u.identify[:], u.serial, u.model, 0)
		u.identifySet = true
	}
	copy(u.buf, u.identify[:])
}

// ATAPIIdentify builds a CD-ROM drive's IDENTIFY PACKET DEVICE page
// (QEMU ide_atapi_identify; shared with the AHCI controller, whose ports
// report ncqQueues, as QEMU's AHCI sets ncq_queues for every device).
func ATAPIIdentify(p []byte, serial, model string, ncqQueues int) {
	clear(p[:512])
	put16(p, 0, 2<<14|5<<8|1<<7|2<<5) // removable CD-ROM, 50 us, 12-byte packets
	padStr(p, 10, 20, serial)
	put16(p, 20, 3)
	put16(p, 21, 512)
	put16(p, 22, 4)
	padStr(p, 23, 8, hwVersion)
	padStr(p, 27, 40, model)
	put16(p, 48, 1)
	put16(p, 49, 1<<9|1<<8) // DMA and LBA
	put16(p, 53, 7)
	put16(p, 62, 7)
	put16(p, 63, 7)
	put16(p, 64, 3)
	put16(p, 65, 0xb4)
	put16(p, 66, 0xb4)
	put16(p, 67, 0x12c)
	put16(p, 68, 0xb4)
	put16(p, 71, 30)
	put16(p, 72, 30)
	if ncqQueues > 0 {
		put16(p, 75, uint16(ncqQueues-1))
		put16(p, 76, 1<<8) // NCQ supported
	}
	put16(p, 80, 0x1e)
	put16(p, 88, 0x3f|1<<13)
}

// GuessGeometry is QEMU's hd_geometry_guess for nb 512-byte sectors of d
// (shared with the AHCI controller).
func GuessGeometry(d *block.Drive, nb uint64) (cyls, heads, secs uint32) {
	return guessGeometry(d, nb)
}

// guessGeometry is QEMU's hd_geometry_guess (hw/block/hd-geometry.c): a
// logical geometry from the MBR's partition table when it has one with at
// most 16 heads, else 16 heads and 63 sectors.
func guessGeometry(d *block.Drive, nb uint64) (cyls, heads, secs uint32) {
	var mbr [512]byte
	if d != nil && nb >= 1 && d.ReadAt(mbr[:], 0) == nil && mbr[510] == 0x55 && mbr[511] == 0xaa {
		for i := range 4 {
			e := mbr[0x1be+16*i:]
			nr := binary.LittleEndian.Uint32(e[12:])
			endHead, endSector := uint32(e[5]), uint32(e[6]&63)
			if nr == 0 || endHead == 0 || endSector == 0 {
				continue
			}
			h := endHead + 1
			c := nb / uint64(h*endSector)
			if c < 1 || c > 16383 {
				continue
			}
			if h > 16 {
				break // a BIOS translation was active: standard geometry
			}
			return uint32(c), h, endSector
		}
	}
	c := nb / (16 * 63)
	c = max(min(c, 16383), 2)
	return uint32(c), 16, 63
}
