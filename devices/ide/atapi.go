package ide

import (
	"encoding/binary"
	"errors"

	"godm/block"
)

// ATAPI command flags (QEMU hw/ide/atapi.c atapi_cmd_table).
const (
	allowUA    = 1 << 0 // runs under a unit attention condition
	checkReady = 1 << 1 // needs a medium
	nonData    = 1 << 2 // transfers no data (a byte count limit of 0 is fine)
	condData   = 1 << 3 // checks the byte count limit itself
)

type atapiCmdEntry struct {
	h     func(u *unit, p []byte)
	flags uint8
}

var atapiCmds [256]atapiCmdEntry

func init() {
	t := &atapiCmds
	t[0x00] = atapiCmdEntry{(*unit).cmdTestUnitReady, checkReady | nonData}
	t[0x03] = atapiCmdEntry{(*unit).cmdRequestSense, allowUA}
	t[0x12] = atapiCmdEntry{(*unit).cmdInquiry, allowUA}
	t[0x1b] = atapiCmdEntry{(*unit).cmdStartStopUnit, nonData}
	t[0x1e] = atapiCmdEntry{(*unit).cmdPreventAllow, nonData}
	t[0x25] = atapiCmdEntry{(*unit).cmdReadCapacity, checkReady}
	t[0x28] = atapiCmdEntry{(*unit).cmdReadCD10, checkReady}
	t[0x2b] = atapiCmdEntry{(*unit).cmdSeekCD, checkReady | nonData}
	t[0x43] = atapiCmdEntry{(*unit).cmdReadTOC, checkReady}
	t[0x46] = atapiCmdEntry{(*unit).cmdGetConfiguration, allowUA}
	t[0x4a] = atapiCmdEntry{(*unit).cmdGetEventStatus, allowUA}
	t[0x51] = atapiCmdEntry{(*unit).cmdReadDiscInfo, checkReady}
	t[0x5a] = atapiCmdEntry{(*unit).cmdModeSense, 0}
	t[0xa8] = atapiCmdEntry{(*unit).cmdReadCD10, checkReady}
	t[0xad] = atapiCmdEntry{(*unit).cmdReadDVDStructure, checkReady}
	t[0xbb] = atapiCmdEntry{(*unit).cmdSetSpeed, nonData}
	t[0xbd] = atapiCmdEntry{(*unit).cmdMechanismStatus, 0}
	t[0xbe] = atapiCmdEntry{(*unit).cmdReadCDRaw, checkReady | condData}
}

func be16(p []byte) int    { return int(binary.BigEndian.Uint16(p)) }
func be32(p []byte) uint32 { return binary.BigEndian.Uint32(p) }

// inserted reports a medium in the drive (QEMU blk_is_inserted: the tray
// does not matter).
func (u *unit) inserted() bool { return u.drv != nil }

// mediaPresent is QEMU's media_present: a medium the drive can read
// (tray closed).
func (u *unit) mediaPresent() bool { return !u.trayOpen && u.nbSectors > 0 }

// cmdPacket is the PACKET command: the guest writes 12 bytes next.
func (u *unit) cmdPacket(uint8) bool {
	if u.feature&0x02 != 0 { // overlapped commands
		u.abort()
		return true
	}
	u.status = stREADY | stSEEK
	u.atapiDMA = u.feature&1 != 0
	if u.atapiDMA {
		u.dmaCmd = dmaATAPI
	}
	u.nsector = 1
	u.transferStart(0, atapiPacket, endAtapiCmd)
	return false
}

// atapiCmd is ide_atapi_cmd: the packet is in buf[:12].
func (u *unit) atapiCmd() {
	p := u.buf
	e := atapiCmds[p[0]]
	if u.senseKey == senseUnitAttention && e.flags&allowUA == 0 {
		u.errReg = errMC | senseUnitAttention<<4
		u.status = stERR
		u.nsector = 0
		u.ch.setIRQ()
		return
	}
	// A changed medium is reported as NOT READY once, then as UNIT
	// ATTENTION, for guests that do not poll events.
	if e.flags&allowUA == 0 && !u.trayOpen && u.inserted() && u.cdromChanged != 0 {
		if u.cdromChanged == 1 {
			u.atapiCmdError(senseNotReady, ascMediumNotPresent)
			u.cdromChanged = 2
		} else {
			u.atapiCmdError(senseUnitAttention, ascMediumMayChanged)
			u.cdromChanged = 0
		}
		return
	}
	if e.flags&checkReady != 0 && (!u.mediaPresent() || !u.inserted()) {
		u.atapiCmdError(senseNotReady, ascMediumNotPresent)
		return
	}
	if e.h != nil && e.flags&(nonData|condData) == 0 && !u.validateBCL() {
		return
	}
	if e.h == nil {
		u.atapiCmdError(senseIllegalRequest, ascIllegalOpcode)
		return
	}
	e.h(u, p)
}

// validateBCL refuses a PIO data command with a byte count limit of 0 at
// the ATA level (ATA8-ACS3 7.17.6.49).
func (u *unit) validateBCL() bool {
	if u.atapiDMA || u.lcyl != 0 || u.hcyl != 0 {
		return true
	}
	u.abort()
	return false
}

func (u *unit) atapiCmdOK() {
	u.errReg = 0
	u.status = stREADY | stSEEK
	u.nsector = u.nsector&^7 | reasonIO | reasonCD
	u.ch.setIRQ()
}

func (u *unit) atapiCmdError(key, asc uint8) {
	u.errReg = key << 4
	u.status = stREADY | stERR
	u.nsector = u.nsector&^7 | reasonIO | reasonCD
	u.senseKey, u.asc = key, asc
	u.ch.setIRQ()
}

// atapiIOError is ide_atapi_io_error.
func (u *unit) atapiIOError(err error) {
	if errors.Is(err, block.ErrClosed) || u.drv == nil {
		u.atapiCmdError(senseNotReady, ascMediumNotPresent)
		return
	}
	u.atapiCmdError(senseIllegalRequest, ascLBAOutOfRange)
}

// atapiReply is ide_atapi_cmd_reply: size bytes of buf to the guest, at
// most max.
func (u *unit) atapiReply(size, max int) {
	size = min(size, max)
	u.lba = -1
	u.packetSize = int64(size)
	u.ioBufSize = size
	u.elemSize = 0
	u.bufIndex = 0
	if u.atapiDMA {
		u.status = stREADY | stSEEK | stDRQ
		u.ch.startDMA(u, dmaATAPI)
		return
	}
	u.status = stREADY | stSEEK
	u.atapiReplyEnd()
}

// atapiReplyEnd is ide_atapi_cmd_reply_end: the PIO side of a reply, one
// byte-count-limited block at a time.
func (u *unit) atapiReplyEnd() {
	if u.packetSize <= 0 {
		u.transferStop()
		u.status = stREADY | stSEEK
		u.nsector = u.nsector&^7 | reasonIO | reasonCD
		u.ch.setIRQ()
		return
	}
	if u.lba != -1 && u.bufIndex >= u.cdSectorSize {
		if err := u.cdReadSector(u.lba, u.buf); err != nil {
			u.transferStop()
			u.atapiIOError(err)
			return
		}
		u.lba++
		u.bufIndex = 0
	}
	if u.elemSize > 0 {
		size := min(int64(u.cdSectorSize-u.bufIndex), u.elemSize)
		u.packetSize -= size
		u.elemSize -= size
		u.bufIndex += int(size)
		u.transferStart(u.bufIndex-int(size), int(size), endAtapiReply)
		return
	}
	u.nsector = u.nsector&^7 | reasonIO
	bcl := int64(u.lcyl) | int64(u.hcyl)<<8
	if bcl == 0xffff {
		bcl--
	}
	size := u.packetSize
	if size > bcl {
		if bcl&1 != 0 {
			bcl--
		}
		size = bcl
	}
	u.lcyl, u.hcyl = uint8(size), uint8(size>>8)
	u.elemSize = size
	if u.lba != -1 {
		size = min(size, int64(u.cdSectorSize-u.bufIndex))
	}
	u.packetSize -= size
	u.elemSize -= size
	u.bufIndex += int(size)
	u.transferStart(u.bufIndex-int(size), int(size), endAtapiReply)
	u.ch.setIRQ()
}

// cdReadSector reads 2 KiB frame lba into p, raw (2352 bytes with a
// synthesised header) when cdSectorSize says so.
func (u *unit) cdReadSector(lba int64, p []byte) error {
	if u.drv == nil {
		return block.ErrClosed
	}
	switch u.cdSectorSize {
	case 2048:
		return u.drv.ReadAt(p[:2048], lba*2048)
	case 2352:
		if err := u.drv.ReadAt(p[16:16+2048], lba*2048); err != nil {
			return err
		}
		cdDataToRaw(p, lba)
		return nil
	}
	return block.ErrBadRequest
}

// lbaToMSF is hw/block/cdrom.c lba_to_msf.
func lbaToMSF(p []byte, lba int64) {
	lba += 150
	p[0] = byte(lba / 75 / 60)
	p[1] = byte(lba / 75 % 60)
	p[2] = byte(lba % 75)
}

// cdDataToRaw adds a mode 1 frame's sync, header and (zero) ECC around
// the 2048 data bytes at p[16:].
func cdDataToRaw(p []byte, lba int64) {
	p[0] = 0
	for i := 1; i <= 10; i++ {
		p[i] = 0xff
	}
	p[11] = 0
	lbaToMSF(p[12:], lba)
	p[15] = 0x01
	clear(p[16+2048 : 2352])
}

// atapiRead starts a READ of n frames of size bytes at lba.
func (u *unit) atapiRead(lba int64, n int64, size int) {
	u.lba = lba
	u.packetSize = n * int64(size)
	u.cdSectorSize = size
	if u.atapiDMA {
		u.bufIndex = 0
		u.ioBufSize = 0
		u.status = stREADY | stSEEK | stDRQ | stBUSY
		u.ch.startDMA(u, dmaATAPI)
		return
	}
	u.elemSize = 0
	u.bufIndex = size
	u.status = stREADY | stSEEK
	u.atapiReplyEnd()
}

// --- commands

func (u *unit) cmdTestUnitReady([]byte) { u.atapiCmdOK() }

func (u *unit) cmdRequestSense(p []byte) {
	max := int(p[4])
	clear(p[:18])
	p[0] = 0x70 | 1<<7
	p[2] = u.senseKey
	p[7] = 10
	p[12] = u.asc
	if u.senseKey == senseUnitAttention {
		u.senseKey = senseNone
	}
	u.atapiReply(18, max)
}

// padStr8 writes s space-padded into p.
func padStr8(p []byte, s string) {
	for i := range p {
		c := byte(' ')
		if i < len(s) {
			c = s[i]
		}
		p[i] = c
	}
}

func (u *unit) cmdInquiry(p []byte) {
	page, max := p[2], int(p[4])
	idx, sizeIdx, pre := 0, 4, 5
	if p[1]&1 != 0 { // vital product data
		pre, sizeIdx = 4, 3
		p[0], p[1], p[2] = 0x05, page, 0
		idx = 4
		switch page {
		case 0x00:
			p[idx], p[idx+1] = 0x00, 0x83
			idx += 2
		case 0x83:
			if idx+24 > max {
				u.atapiCmdError(senseIllegalRequest, ascDataPhaseError)
				return
			}
			copy(p[idx:], []byte{0x02, 0x00, 0x00, 20})
			idx += 4
			padStr8(p[idx:idx+20], u.serial)
			idx += 20
			if idx+72 <= max {
				copy(p[idx:], []byte{0x02, 0x01, 0x00, 68})
				idx += 4
				padStr8(p[idx:idx+8], "ATA")
				idx += 8
				padStr8(p[idx:idx+40], u.model)
				idx += 40
				padStr8(p[idx:idx+20], u.serial)
				idx += 20
			}
		default:
			u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
			return
		}
	} else {
		p[0], p[1], p[2], p[3] = 0x05, 0x80, 0x00, 0x21
		p[5], p[6], p[7] = 0, 0, 0
		padStr8(p[8:16], "QEMU")
		padStr8(p[16:32], "QEMU DVD-ROM")
		padStr8(p[32:36], hwVersion)
		idx = 36
	}
	p[sizeIdx] = byte(idx - pre)
	u.atapiReply(idx, max)
}

func (u *unit) cmdStartStopUnit(p []byte) {
	start, loej := p[4]&1 != 0, p[4]&2 != 0
	if p[4]&0xf0 != 0 { // power condition: no load or eject
		u.atapiCmdOK()
		return
	}
	if loej {
		if !start && !u.trayOpen && u.trayLocked {
			key := uint8(senseIllegalRequest)
			if u.inserted() {
				key = senseNotReady
			}
			u.atapiCmdError(key, ascRemovalPrevented)
			return
		}
		u.trayOpen = !start
	}
	u.atapiCmdOK()
}

func (u *unit) cmdPreventAllow(p []byte) {
	u.trayLocked = p[4]&1 != 0
	u.atapiCmdOK()
}

func (u *unit) cmdReadCapacity(p []byte) {
	total := u.nbSectors >> 2
	binary.BigEndian.PutUint32(p[0:], uint32(total-1))
	binary.BigEndian.PutUint32(p[4:], 2048)
	u.atapiReply(8, 8)
}

func (u *unit) cmdReadCD10(p []byte) {
	var n uint32
	if p[0] == 0x28 {
		n = uint32(be16(p[7:]))
	} else {
		n = be32(p[6:])
	}
	if n == 0 {
		u.atapiCmdOK()
		return
	}
	lba := be32(p[2:])
	total := u.nbSectors >> 2
	// QEMU computes lba + n - 1 in 32 bits.
	if uint64(lba) >= total || uint64(lba+n-1) >= total {
		u.atapiCmdError(senseIllegalRequest, ascLBAOutOfRange)
		return
	}
	u.atapiRead(int64(lba), int64(n), 2048)
}

func (u *unit) cmdReadCDRaw(p []byte) {
	n := int64(p[6])<<16 | int64(p[7])<<8 | int64(p[8])
	lba := int64(int32(be32(p[2:])))
	if n == 0 {
		u.atapiCmdOK()
		return
	}
	req := p[9] & 0xf8
	if req == 0 {
		u.atapiCmdOK()
		return
	}
	// QEMU's cmd_read_cd checks no range, and its READ of LBA
	// 0xffffffff then walks past the end of its I/O buffer, because -1
	// is also its "not reading sectors" mark. A drive answers LBA OUT OF
	// RANGE (MMC-6 6.19.3), as READ(10/12) does here.
	if total := int64(u.nbSectors >> 2); lba < 0 || lba >= total || n > total-lba {
		u.atapiCmdError(senseIllegalRequest, ascLBAOutOfRange)
		return
	}
	if !u.validateBCL() {
		return
	}
	switch req {
	case 0x10:
		u.atapiRead(lba, n, 2048)
	case 0xf8:
		u.atapiRead(lba, n, 2352)
	default:
		u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
	}
}

func (u *unit) cmdSeekCD(p []byte) {
	if uint64(be32(p[2:])) >= u.nbSectors>>2 {
		u.atapiCmdError(senseIllegalRequest, ascLBAOutOfRange)
		return
	}
	u.atapiCmdOK()
}

func (u *unit) cmdReadTOC(p []byte) {
	max := be16(p[7:])
	format := p[9] >> 6
	msf := (p[1]>>1)&1 != 0
	start := p[6]
	total := int64(u.nbSectors >> 2)
	switch format {
	case 0:
		n := readTOC(p, total, msf, start)
		if n < 0 {
			break
		}
		u.atapiReply(n, max)
		return
	case 1:
		clear(p[:12])
		p[1], p[2], p[3] = 0x0a, 0x01, 0x01
		u.atapiReply(12, max)
		return
	case 2:
		u.atapiReply(readTOCRaw(p, total, msf), max)
		return
	}
	u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
}

// readTOC is hw/block/cdrom.c cdrom_read_toc: one data track and the
// lead-out; -1 for a start track past the first but for the lead-out.
func readTOC(p []byte, total int64, msf bool, start uint8) int {
	if start > 1 && start != 0xaa {
		return -1
	}
	q := 2
	p[q], p[q+1] = 1, 1
	q += 2
	addr := func(lba int64) {
		if msf {
			p[q] = 0
			lbaToMSF(p[q+1:], lba)
		} else {
			binary.BigEndian.PutUint32(p[q:], uint32(lba))
		}
		q += 4
	}
	if start <= 1 {
		p[q], p[q+1], p[q+2], p[q+3] = 0, 0x14, 1, 0
		q += 4
		addr(0)
	}
	p[q], p[q+1], p[q+2], p[q+3] = 0, 0x16, 0xaa, 0
	q += 4
	addr(total)
	binary.BigEndian.PutUint16(p, uint16(q-2))
	return q
}

// readTOCRaw is cdrom_read_toc_raw: one session's A0, A1, A2 and track 1
// entries.
func readTOCRaw(p []byte, total int64, msf bool) int {
	q := 2
	p[q], p[q+1] = 1, 1
	q += 2
	for _, e := range [][11]byte{
		{1, 0x14, 0, 0xa0, 0, 0, 0, 0, 1, 0, 0},
		{1, 0x14, 0, 0xa1, 0, 0, 0, 0, 1, 0, 0},
	} {
		copy(p[q:], e[:])
		q += 11
	}
	copy(p[q:], []byte{1, 0x14, 0, 0xa2, 0, 0, 0})
	q += 7
	if msf {
		p[q] = 0
		lbaToMSF(p[q+1:], total)
	} else {
		binary.BigEndian.PutUint32(p[q:], uint32(total))
	}
	q += 4
	copy(p[q:], []byte{1, 0x14, 0, 1, 0, 0, 0})
	q += 7
	if msf {
		p[q] = 0
		lbaToMSF(p[q+1:], 0)
	} else {
		binary.BigEndian.PutUint32(p[q:], 0)
	}
	q += 4
	binary.BigEndian.PutUint16(p, uint16(q-2))
	return q
}

func (u *unit) cmdGetConfiguration(p []byte) {
	if p[2] != 0 || p[3] != 0 { // only feature 0
		u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	max := min(be16(p[7:]), sectorSize)
	clear(p[:max])
	switch {
	case u.mediaPresent() && u.nbSectors > cdMaxSectors:
		binary.BigEndian.PutUint16(p[6:], 0x10) // DVD-ROM
	case u.mediaPresent():
		binary.BigEndian.PutUint16(p[6:], 0x08) // CD-ROM
	}
	p[10] = 0x02 | 0x01 // persistent, current
	n := 12
	for i, prof := range []uint16{0x10, 0x08} {
		q := p[12+4*i:]
		binary.BigEndian.PutUint16(q, prof)
		q[2] = 0
		if q[0] == p[6] && q[1] == p[7] {
			q[2] = 1
		}
		p[11] += 4
		n += 4
	}
	binary.BigEndian.PutUint32(p, uint32(n-4))
	u.atapiReply(n, max)
}

func (u *unit) cmdGetEventStatus(p []byte) {
	max := be16(p[7:])
	polled, class := p[1]&1 != 0, p[4]
	if !polled { // asynchronous mode is not served (MMC allows that)
		u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	const ncrMedia = 1 << 4
	p[3] = ncrMedia // supported events
	p[2] = 0
	used := 4
	if class&ncrMedia != 0 {
		p[2] = 4 // media class
		status := uint8(0)
		if u.trayOpen {
			status = 1
		} else if u.inserted() {
			status = 2
		}
		code := uint8(0)
		if status != 1 {
			if u.evNewMedia {
				code, u.evNewMedia = 2, false
			} else if u.evEjectReq {
				code, u.evEjectReq = 1, false
			}
		}
		p[4], p[5], p[6], p[7] = code, status, 0, 0
		used = 8
	} else {
		p[2] = 0x80 // no event available
	}
	binary.BigEndian.PutUint16(p, uint16(used-4))
	u.atapiReply(used, max)
}

func (u *unit) cmdReadDiscInfo(p []byte) {
	typ, max := p[1]&7, be16(p[7:])
	if typ != 0 { // types 1 and 2 are Blu-ray only
		u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	clear(p[:34])
	p[1], p[2], p[3], p[4], p[5], p[6], p[7] = 32, 0xe, 1, 1, 1, 1, 0x20
	u.atapiReply(34, max)
}

func (u *unit) cmdModeSense(p []byte) {
	max := be16(p[7:])
	action, code := p[2]>>6, p[2]&0x3f
	switch action {
	case 0:
		hdr := func(n int) {
			binary.BigEndian.PutUint16(p, uint16(n-2))
			p[2], p[3], p[4], p[5], p[6], p[7] = 0x70, 0, 0, 0, 0, 0
		}
		switch code {
		case 0x01: // read/write error recovery
			hdr(16)
			copy(p[8:16], []byte{0x01, 16 - 10, 0x00, 0x05, 0, 0, 0, 0})
			u.atapiReply(16, max)
			return
		case 0x0e: // audio control
			hdr(24)
			clear(p[8:24])
			p[8], p[9] = 0x0e, 24-10
			u.atapiReply(24, max)
			return
		case 0x2a: // capabilities
			hdr(30)
			clear(p[8:30])
			p[8], p[9], p[10], p[11] = 0x2a, 30-10, 0x3b, 0
			p[12] = 0x71
			p[13] = 3 << 5
			p[14] = 1<<0 | 1<<3 | 1<<5
			if u.trayLocked {
				p[14] |= 1 << 1
			}
			binary.BigEndian.PutUint16(p[16:], 704)
			p[19] = 2
			binary.BigEndian.PutUint16(p[20:], 512)
			binary.BigEndian.PutUint16(p[22:], 704)
			u.atapiReply(30, max)
			return
		}
	case 3:
		u.atapiCmdError(senseIllegalRequest, ascSavingNotSupported)
		return
	}
	u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
}

// cmdReadDVDStructure is READ DVD STRUCTURE (QEMU atapi.c
// cmd_read_dvd_structure and ide_dvd_read_structure): DVD-ROM formats
// 0 (physical), 1 (copyright), 4 (manufacturing) and 0xff (the list);
// a CD-sized medium has none.
func (u *unit) cmdReadDVDStructure(p []byte) {
	media, format, max := p[1], p[7], be16(p[8:])
	isCD := u.mediaPresent() && u.nbSectors <= cdMaxSectors
	if format < 0xff {
		if isCD {
			u.atapiCmdError(senseIllegalRequest, ascIncompatibleFormat)
			return
		}
		if !u.mediaPresent() {
			u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
			return
		}
	}
	clear(p[:min(max, ioBufLen)]) // QEMU clears before reading the layer (byte 6)
	if media != 0 || (format >= 0x80 && format != 0xff) {
		u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	switch format {
	case 0x00:
		total := u.nbSectors >> 2
		if p[6] != 0 {
			u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
			return
		}
		if total == 0 {
			u.atapiCmdError(senseIllegalRequest, ascMediumNotPresent)
			return
		}
		p[4], p[5], p[6], p[7] = 1, 0xf, 1, 0
		binary.BigEndian.PutUint32(p[8:], 0)
		binary.BigEndian.PutUint32(p[12:], uint32(total-1))
		binary.BigEndian.PutUint32(p[16:], uint32(total-1))
		binary.BigEndian.PutUint16(p, 2048+2)
		u.atapiReply(2048+4, max)
	case 0x01:
		p[4], p[5] = 0, 0
		binary.BigEndian.PutUint16(p, 4+2)
		u.atapiReply(4+4, max)
	case 0x04:
		binary.BigEndian.PutUint16(p, 2048+2)
		u.atapiReply(2048+4, max)
	case 0xff:
		for i, e := range [][2]uint16{{0x00, 2048 + 4}, {0x01, 4 + 4}, {0x03, 188 + 4}, {0x04, 2048 + 4}} {
			q := p[4+4*i:]
			q[0], q[1] = byte(e[0]), 0x40 // readable, not writable
			binary.BigEndian.PutUint16(q[2:], e[1])
		}
		binary.BigEndian.PutUint16(p, 16+2)
		u.atapiReply(16+4, max)
	default:
		u.atapiCmdError(senseIllegalRequest, ascInvFieldInCmd)
	}
}

func (u *unit) cmdSetSpeed([]byte) { u.atapiCmdOK() }

func (u *unit) cmdMechanismStatus(p []byte) {
	max := be16(p[8:])
	clear(p[:8])
	p[5] = 1
	u.atapiReply(8, max)
}

// --- media changes (the monitor's eject and change)

// ErrLocked is returned when the guest holds the tray locked.
var ErrLocked = errors.New("ide: medium locked by the guest")

// ErrNotCD is returned for media operations on a position without a
// CD-ROM drive.
var ErrNotCD = errors.New("ide: not a CD-ROM drive")

func (d *Controller) cd(bus, unitN int) (*channel, *unit, error) {
	if bus < 0 || bus > 1 || unitN < 0 || unitN > 1 {
		return nil, nil, ErrPosition
	}
	ch := &d.ch[bus]
	u := &ch.u[unitN]
	if !u.has || u.kd != CD {
		return nil, nil, ErrNotCD
	}
	return ch, u, nil
}

// OpenTray opens the tray and removes the medium, returning it (nil if
// there was none). With the tray locked and force false the guest is
// asked to release it (an eject request event) and ErrLocked returned, as
// QEMU's eject does; force unlocks first.
func (d *Controller) OpenTray(bus, unitN int, force bool) (*block.Drive, error) {
	ch0 := &d.ch[bus&1]
	ch0.mu.Lock()
	ch, u, err := d.cd(bus, unitN)
	if err != nil {
		ch0.mu.Unlock()
		return nil, err
	}
	if u.trayLocked && !force {
		u.evEjectReq = true
		ch.setIRQ()
		ch.mu.Unlock()
		return nil, ErrLocked
	}
	if force {
		u.trayLocked = false
	}
	old := u.drv
	q := u.q
	u.q = nil
	u.drv = nil
	u.nbSectors = 0
	// ide_cd_change_cb(load=false)
	u.trayOpen = true
	u.cdromChanged = 1
	u.evNewMedia = true
	u.evEjectReq = false
	ch.setIRQ()
	ch.gen++
	ch.mu.Unlock()
	if q != nil {
		q.Close()
	}
	return old, nil
}

// InsertMedium puts drv in the (empty) drive and closes the tray, as
// QMP's blockdev-change-medium does after opening it.
func (d *Controller) InsertMedium(bus, unitN int, drv *block.Drive) error {
	ch0 := &d.ch[bus&1]
	ch0.mu.Lock()
	defer ch0.mu.Unlock()
	ch, u, err := d.cd(bus, unitN)
	if err != nil {
		return err
	}
	if u.drv != nil {
		return errors.New("ide: the drive has a medium")
	}
	u.setMedium(drv)
	u.trayOpen = false
	u.cdromChanged = 1
	u.evNewMedia = true
	u.evEjectReq = false
	ch.setIRQ()
	return nil
}

// TrayState reports a CD-ROM drive's tray (query-block's tray_open and
// locked).
func (d *Controller) TrayState(bus, unitN int) (open, locked bool, err error) {
	ch0 := &d.ch[bus&1]
	ch0.mu.Lock()
	defer ch0.mu.Unlock()
	_, u, err := d.cd(bus, unitN)
	if err != nil {
		return false, false, err
	}
	return u.trayOpen, u.trayLocked, nil
}
