package ide

import (
	"encoding/binary"
	"errors"
	"fmt"

	"godm/block"
	"godm/devices/savestate"
)

// ATAPI command flags (QEMU hw/ide/atapi.c atapi_cmd_table).
const (
	allowUA    = 1 << 0 // runs under a unit attention condition
	checkReady = 1 << 1 // needs a medium
	nonData    = 1 << 2 // transfers no data (a byte count limit of 0 is fine)
	condData   = 1 << 3 // checks the byte count limit itself
)

type atapiCmdEntry struct {
	h     func(s *CDState, p []byte)
	flags uint8
}

var atapiCmds [256]atapiCmdEntry

func init() {
	t := &atapiCmds
	t[0x00] = atapiCmdEntry{(*CDState).cmdTestUnitReady, checkReady | nonData}
	t[0x03] = atapiCmdEntry{(*CDState).cmdRequestSense, allowUA}
	t[0x12] = atapiCmdEntry{(*CDState).cmdInquiry, allowUA}
	t[0x1b] = atapiCmdEntry{(*CDState).cmdStartStopUnit, nonData}
	t[0x1e] = atapiCmdEntry{(*CDState).cmdPreventAllow, nonData}
	t[0x25] = atapiCmdEntry{(*CDState).cmdReadCapacity, checkReady}
	t[0x28] = atapiCmdEntry{(*CDState).cmdReadCD10, checkReady}
	t[0x2b] = atapiCmdEntry{(*CDState).cmdSeekCD, checkReady | nonData}
	t[0x43] = atapiCmdEntry{(*CDState).cmdReadTOC, checkReady}
	t[0x46] = atapiCmdEntry{(*CDState).cmdGetConfiguration, allowUA}
	t[0x4a] = atapiCmdEntry{(*CDState).cmdGetEventStatus, allowUA}
	t[0x51] = atapiCmdEntry{(*CDState).cmdReadDiscInfo, checkReady}
	t[0x5a] = atapiCmdEntry{(*CDState).cmdModeSense, 0}
	t[0xa8] = atapiCmdEntry{(*CDState).cmdReadCD10, checkReady}
	t[0xad] = atapiCmdEntry{(*CDState).cmdReadDVDStructure, checkReady}
	t[0xbb] = atapiCmdEntry{(*CDState).cmdSetSpeed, nonData}
	t[0xbd] = atapiCmdEntry{(*CDState).cmdMechanismStatus, 0}
	t[0xbe] = atapiCmdEntry{(*CDState).cmdReadCDRaw, checkReady | condData}
}

func be16(p []byte) int    { return int(binary.BigEndian.Uint16(p)) }
func be32(p []byte) uint32 { return binary.BigEndian.Uint32(p) }

// CDState is an ATAPI CD-ROM drive's medium, tray and sense state and its
// command layer (QEMU's IDEState ATAPI fields and hw/ide/atapi.c),
// independent of the transport: the IDE channel (the PIO data register
// and the bus-master engine) and the AHCI port (the command table's ACMD
// area and PRDT) both feed it packets and move what Exec answers. The
// IDE unit embeds it for hard disks too (the medium, serial and model
// are shared with the ATA layer).
type CDState struct {
	drv           *block.Drive
	nbSectors     uint64 // 512-byte sectors of the medium
	serial, model string

	senseKey, asc          uint8
	cdromChanged           uint8
	trayOpen, trayLocked   bool
	evNewMedia, evEjectReq bool
	cdSectorSize           int // the running READ's frame size

	// The command being executed.
	dma, bclZero bool
	res          ATAPIResult
}

// ATAPIKind is what a packet command asks of the transport.
type ATAPIKind uint8

const (
	// ATAPIGood: good status, no data (ide_atapi_cmd_ok).
	ATAPIGood ATAPIKind = iota
	// ATAPICheck: CHECK CONDITION, the sense set; the error register is
	// the sense key << 4 (ide_atapi_cmd_error).
	ATAPICheck
	// ATAPIUnitAttention: a command refused while a unit attention is
	// pending (ide_atapi_cmd_check_status: error MC | UA<<4, status ERR
	// alone, count 0).
	ATAPIUnitAttention
	// ATAPIAbort: the ATA command is aborted (a PIO data command with a
	// byte count limit of 0).
	ATAPIAbort
	// ATAPIReply: N bytes of the packet buffer go to the host.
	ATAPIReply
	// ATAPIRead: Count frames of FrameSize bytes from frame LBA.
	ATAPIRead
)

// ATAPIResult is Exec's answer.
type ATAPIResult struct {
	Kind      ATAPIKind
	N         int
	LBA       int64
	Count     int64
	FrameSize int
}

// Inserted reports a medium in the drive (QEMU blk_is_inserted: the tray
// does not matter).
func (s *CDState) Inserted() bool { return s.drv != nil }

func (s *CDState) inserted() bool { return s.drv != nil }

// mediaPresent is QEMU's media_present: a medium the drive can read
// (tray closed).
func (s *CDState) mediaPresent() bool { return !s.trayOpen && s.nbSectors > 0 }

// SetIdentity sets the serial number and model INQUIRY reports.
func (s *CDState) SetIdentity(serial, model string) { s.serial, s.model = serial, model }

// SetMedium installs drv (nil: none) as the medium.
func (s *CDState) SetMedium(drv *block.Drive) {
	s.drv = drv
	s.nbSectors = 0
	if drv != nil {
		s.nbSectors = uint64(drv.Info().Size) / sectorSize
	}
}

// Medium returns the medium (nil: none).
func (s *CDState) Medium() *block.Drive { return s.drv }

// Sense returns the sense key and additional sense code.
func (s *CDState) Sense() (key, asc uint8) { return s.senseKey, s.asc }

// Reset is the ATAPI part of ide_reset: sense, change and tray state
// cleared.
func (s *CDState) Reset() {
	s.senseKey, s.asc = 0, 0
	s.cdromChanged = 0
	s.cdSectorSize = 0
	s.trayLocked, s.trayOpen = false, false
}

// Exec runs the 12-byte packet in buf[:12] (ide_atapi_cmd); a reply is
// built in buf, which must hold at least 4 KiB. dma says the host moves
// the data by DMA, bclZero that a PIO command's byte count limit is 0.
func (s *CDState) Exec(buf []byte, dma, bclZero bool) ATAPIResult {
	s.dma, s.bclZero = dma, bclZero
	s.res = ATAPIResult{Kind: ATAPIGood}
	p := buf
	e := atapiCmds[p[0]]
	if s.senseKey == senseUnitAttention && e.flags&allowUA == 0 {
		return ATAPIResult{Kind: ATAPIUnitAttention}
	}
	// A changed medium is reported as NOT READY once, then as UNIT
	// ATTENTION, for guests that do not poll events.
	if e.flags&allowUA == 0 && !s.trayOpen && s.inserted() && s.cdromChanged != 0 {
		if s.cdromChanged == 1 {
			s.check(senseNotReady, ascMediumNotPresent)
			s.cdromChanged = 2
		} else {
			s.check(senseUnitAttention, ascMediumMayChanged)
			s.cdromChanged = 0
		}
		return s.res
	}
	if e.flags&checkReady != 0 && (!s.mediaPresent() || !s.inserted()) {
		s.check(senseNotReady, ascMediumNotPresent)
		return s.res
	}
	if e.h != nil && e.flags&(nonData|condData) == 0 && !s.validateBCL() {
		return s.res
	}
	if e.h == nil {
		s.check(senseIllegalRequest, ascIllegalOpcode)
		return s.res
	}
	e.h(s, p)
	return s.res
}

// validateBCL refuses a PIO data command with a byte count limit of 0 at
// the ATA level (ATA8-ACS3 7.17.6.49).
func (s *CDState) validateBCL() bool {
	if s.dma || !s.bclZero {
		return true
	}
	s.res = ATAPIResult{Kind: ATAPIAbort}
	return false
}

func (s *CDState) ok() { s.res = ATAPIResult{Kind: ATAPIGood} }

func (s *CDState) check(key, asc uint8) {
	s.senseKey, s.asc = key, asc
	s.res = ATAPIResult{Kind: ATAPICheck}
}

func (s *CDState) reply(size, max int) {
	s.res = ATAPIResult{Kind: ATAPIReply, N: min(size, max)}
}

func (s *CDState) read(lba, n int64, size int) {
	s.cdSectorSize = size
	s.res = ATAPIResult{Kind: ATAPIRead, LBA: lba, Count: n, FrameSize: size}
}

// IOError is ide_atapi_io_error: the sense for a failed read (NOT READY
// once the medium is gone, else LBA OUT OF RANGE).
func (s *CDState) IOError(err error) {
	if errors.Is(err, block.ErrClosed) || s.drv == nil {
		s.check(senseNotReady, ascMediumNotPresent)
		return
	}
	s.check(senseIllegalRequest, ascLBAOutOfRange)
}

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

// atapiCmd is ide_atapi_cmd on the IDE transport: the packet is in
// buf[:12].
func (u *unit) atapiCmd() {
	r := u.CDState.Exec(u.buf, u.atapiDMA, u.lcyl == 0 && u.hcyl == 0)
	switch r.Kind {
	case ATAPIGood:
		u.atapiCmdOK()
	case ATAPICheck:
		u.atapiCheck()
	case ATAPIUnitAttention:
		u.errReg = errMC | senseUnitAttention<<4
		u.status = stERR
		u.nsector = 0
		u.ch.setIRQ()
	case ATAPIAbort:
		u.abort()
	case ATAPIReply:
		u.atapiReply(r.N, r.N)
	case ATAPIRead:
		u.atapiRead(r.LBA, r.Count, r.FrameSize)
	}
}

func (u *unit) atapiCmdOK() {
	u.errReg = 0
	u.status = stREADY | stSEEK
	u.nsector = u.nsector&^7 | reasonIO | reasonCD
	u.ch.setIRQ()
}

// atapiCheck ends the command with the sense set by the command layer.
func (u *unit) atapiCheck() {
	u.errReg = u.senseKey << 4
	u.status = stREADY | stERR
	u.nsector = u.nsector&^7 | reasonIO | reasonCD
	u.ch.setIRQ()
}

func (u *unit) atapiCmdError(key, asc uint8) {
	u.CDState.check(key, asc)
	u.atapiCheck()
}

// atapiIOError is ide_atapi_io_error.
func (u *unit) atapiIOError(err error) {
	u.CDState.IOError(err)
	u.atapiCheck()
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
func (s *CDState) cdReadSector(lba int64, p []byte) error {
	if s.drv == nil {
		return block.ErrClosed
	}
	switch s.cdSectorSize {
	case 2048:
		return s.drv.ReadAt(p[:2048], lba*2048)
	case 2352:
		if err := s.drv.ReadAt(p[16:16+2048], lba*2048); err != nil {
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

// CDFramesToRaw turns n 2048-byte frames at the start of p (frame lba
// first) into n raw 2352-byte frames in place, as READ CD with the sync,
// header, data and EDC/ECC bits asks: p must hold n*2352 bytes.
func CDFramesToRaw(p []byte, lba int64, n int) {
	for i := n - 1; i >= 0; i-- {
		f := p[i*2352 : (i+1)*2352]
		copy(f[16:16+2048], p[i*2048:(i+1)*2048])
		cdDataToRaw(f, lba+int64(i))
	}
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

func (s *CDState) cmdTestUnitReady([]byte) { s.ok() }

func (s *CDState) cmdRequestSense(p []byte) {
	max := int(p[4])
	clear(p[:18])
	p[0] = 0x70 | 1<<7
	p[2] = s.senseKey
	p[7] = 10
	p[12] = s.asc
	if s.senseKey == senseUnitAttention {
		s.senseKey = senseNone
	}
	s.reply(18, max)
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

func (s *CDState) cmdInquiry(p []byte) {
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
				s.check(senseIllegalRequest, ascDataPhaseError)
				return
			}
			copy(p[idx:], []byte{0x02, 0x00, 0x00, 20})
			idx += 4
			padStr8(p[idx:idx+20], s.serial)
			idx += 20
			if idx+72 <= max {
				copy(p[idx:], []byte{0x02, 0x01, 0x00, 68})
				idx += 4
				padStr8(p[idx:idx+8], "ATA")
				idx += 8
				padStr8(p[idx:idx+40], s.model)
				idx += 40
				padStr8(p[idx:idx+20], s.serial)
				idx += 20
			}
		default:
			s.check(senseIllegalRequest, ascInvFieldInCmd)
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
	s.reply(idx, max)
}

func (s *CDState) cmdStartStopUnit(p []byte) {
	start, loej := p[4]&1 != 0, p[4]&2 != 0
	if p[4]&0xf0 != 0 { // power condition: no load or eject
		s.ok()
		return
	}
	if loej {
		if !start && !s.trayOpen && s.trayLocked {
			key := uint8(senseIllegalRequest)
			if s.inserted() {
				key = senseNotReady
			}
			s.check(key, ascRemovalPrevented)
			return
		}
		s.trayOpen = !start
	}
	s.ok()
}

func (s *CDState) cmdPreventAllow(p []byte) {
	s.trayLocked = p[4]&1 != 0
	s.ok()
}

func (s *CDState) cmdReadCapacity(p []byte) {
	total := s.nbSectors >> 2
	binary.BigEndian.PutUint32(p[0:], uint32(total-1))
	binary.BigEndian.PutUint32(p[4:], 2048)
	s.reply(8, 8)
}

func (s *CDState) cmdReadCD10(p []byte) {
	var n uint32
	if p[0] == 0x28 {
		n = uint32(be16(p[7:]))
	} else {
		n = be32(p[6:])
	}
	if n == 0 {
		s.ok()
		return
	}
	lba := be32(p[2:])
	total := s.nbSectors >> 2
	// QEMU computes lba + n - 1 in 32 bits.
	if uint64(lba) >= total || uint64(lba+n-1) >= total {
		s.check(senseIllegalRequest, ascLBAOutOfRange)
		return
	}
	s.read(int64(lba), int64(n), 2048)
}

func (s *CDState) cmdReadCDRaw(p []byte) {
	n := int64(p[6])<<16 | int64(p[7])<<8 | int64(p[8])
	lba := int64(int32(be32(p[2:])))
	if n == 0 {
		s.ok()
		return
	}
	req := p[9] & 0xf8
	if req == 0 {
		s.ok()
		return
	}
	// QEMU's cmd_read_cd checks no range, and its READ of LBA
	// 0xffffffff then walks past the end of its I/O buffer, because -1
	// is also its "not reading sectors" mark. A drive answers LBA OUT OF
	// RANGE (MMC-6 6.19.3), as READ(10/12) does here.
	if total := int64(s.nbSectors >> 2); lba < 0 || lba >= total || n > total-lba {
		s.check(senseIllegalRequest, ascLBAOutOfRange)
		return
	}
	if !s.validateBCL() {
		return
	}
	switch req {
	case 0x10:
		s.read(lba, n, 2048)
	case 0xf8:
		s.read(lba, n, 2352)
	default:
		s.check(senseIllegalRequest, ascInvFieldInCmd)
	}
}

func (s *CDState) cmdSeekCD(p []byte) {
	if uint64(be32(p[2:])) >= s.nbSectors>>2 {
		s.check(senseIllegalRequest, ascLBAOutOfRange)
		return
	}
	s.ok()
}

func (s *CDState) cmdReadTOC(p []byte) {
	max := be16(p[7:])
	format := p[9] >> 6
	msf := (p[1]>>1)&1 != 0
	start := p[6]
	total := int64(s.nbSectors >> 2)
	switch format {
	case 0:
		n := readTOC(p, total, msf, start)
		if n < 0 {
			break
		}
		s.reply(n, max)
		return
	case 1:
		clear(p[:12])
		p[1], p[2], p[3] = 0x0a, 0x01, 0x01
		s.reply(12, max)
		return
	case 2:
		s.reply(readTOCRaw(p, total, msf), max)
		return
	}
	s.check(senseIllegalRequest, ascInvFieldInCmd)
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

func (s *CDState) cmdGetConfiguration(p []byte) {
	if p[2] != 0 || p[3] != 0 { // only feature 0
		s.check(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	max := min(be16(p[7:]), sectorSize)
	clear(p[:max])
	switch {
	case s.mediaPresent() && s.nbSectors > cdMaxSectors:
		binary.BigEndian.PutUint16(p[6:], 0x10) // DVD-ROM
	case s.mediaPresent():
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
	s.reply(n, max)
}

func (s *CDState) cmdGetEventStatus(p []byte) {
	max := be16(p[7:])
	polled, class := p[1]&1 != 0, p[4]
	if !polled { // asynchronous mode is not served (MMC allows that)
		s.check(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	const ncrMedia = 1 << 4
	p[3] = ncrMedia // supported events
	p[2] = 0
	used := 4
	if class&ncrMedia != 0 {
		p[2] = 4 // media class
		status := uint8(0)
		if s.trayOpen {
			status = 1
		} else if s.inserted() {
			status = 2
		}
		code := uint8(0)
		if status != 1 {
			if s.evNewMedia {
				code, s.evNewMedia = 2, false
			} else if s.evEjectReq {
				code, s.evEjectReq = 1, false
			}
		}
		p[4], p[5], p[6], p[7] = code, status, 0, 0
		used = 8
	} else {
		p[2] = 0x80 // no event available
	}
	binary.BigEndian.PutUint16(p, uint16(used-4))
	s.reply(used, max)
}

func (s *CDState) cmdReadDiscInfo(p []byte) {
	typ, max := p[1]&7, be16(p[7:])
	if typ != 0 { // types 1 and 2 are Blu-ray only
		s.check(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	clear(p[:34])
	p[1], p[2], p[3], p[4], p[5], p[6], p[7] = 32, 0xe, 1, 1, 1, 1, 0x20
	s.reply(34, max)
}

func (s *CDState) cmdModeSense(p []byte) {
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
			s.reply(16, max)
			return
		case 0x0e: // audio control
			hdr(24)
			clear(p[8:24])
			p[8], p[9] = 0x0e, 24-10
			s.reply(24, max)
			return
		case 0x2a: // capabilities
			hdr(30)
			clear(p[8:30])
			p[8], p[9], p[10], p[11] = 0x2a, 30-10, 0x3b, 0
			p[12] = 0x71
			p[13] = 3 << 5
			p[14] = 1<<0 | 1<<3 | 1<<5
			if s.trayLocked {
				p[14] |= 1 << 1
			}
			binary.BigEndian.PutUint16(p[16:], 704)
			p[19] = 2
			binary.BigEndian.PutUint16(p[20:], 512)
			binary.BigEndian.PutUint16(p[22:], 704)
			s.reply(30, max)
			return
		}
	case 3:
		s.check(senseIllegalRequest, ascSavingNotSupported)
		return
	}
	s.check(senseIllegalRequest, ascInvFieldInCmd)
}

// cmdReadDVDStructure is READ DVD STRUCTURE (QEMU atapi.c
// cmd_read_dvd_structure and ide_dvd_read_structure): DVD-ROM formats
// 0 (physical), 1 (copyright), 4 (manufacturing) and 0xff (the list);
// a CD-sized medium has none.
func (s *CDState) cmdReadDVDStructure(p []byte) {
	media, format, max := p[1], p[7], be16(p[8:])
	isCD := s.mediaPresent() && s.nbSectors <= cdMaxSectors
	if format < 0xff {
		if isCD {
			s.check(senseIllegalRequest, ascIncompatibleFormat)
			return
		}
		if !s.mediaPresent() {
			s.check(senseIllegalRequest, ascInvFieldInCmd)
			return
		}
	}
	clear(p[:min(max, len(p))]) // QEMU clears before reading the layer (byte 6)
	if media != 0 || (format >= 0x80 && format != 0xff) {
		s.check(senseIllegalRequest, ascInvFieldInCmd)
		return
	}
	switch format {
	case 0x00:
		total := s.nbSectors >> 2
		if p[6] != 0 {
			s.check(senseIllegalRequest, ascInvFieldInCmd)
			return
		}
		if total == 0 {
			s.check(senseIllegalRequest, ascMediumNotPresent)
			return
		}
		p[4], p[5], p[6], p[7] = 1, 0xf, 1, 0
		binary.BigEndian.PutUint32(p[8:], 0)
		binary.BigEndian.PutUint32(p[12:], uint32(total-1))
		binary.BigEndian.PutUint32(p[16:], uint32(total-1))
		binary.BigEndian.PutUint16(p, 2048+2)
		s.reply(2048+4, max)
	case 0x01:
		p[4], p[5] = 0, 0
		binary.BigEndian.PutUint16(p, 4+2)
		s.reply(4+4, max)
	case 0x04:
		binary.BigEndian.PutUint16(p, 2048+2)
		s.reply(2048+4, max)
	case 0xff:
		for i, e := range [][2]uint16{{0x00, 2048 + 4}, {0x01, 4 + 4}, {0x03, 188 + 4}, {0x04, 2048 + 4}} {
			q := p[4+4*i:]
			q[0], q[1] = byte(e[0]), 0x40 // readable, not writable
			binary.BigEndian.PutUint16(q[2:], e[1])
		}
		binary.BigEndian.PutUint16(p, 16+2)
		s.reply(16+4, max)
	default:
		s.check(senseIllegalRequest, ascInvFieldInCmd)
	}
}

func (s *CDState) cmdSetSpeed([]byte) { s.ok() }

func (s *CDState) cmdMechanismStatus(p []byte) {
	max := be16(p[8:])
	clear(p[:8])
	p[5] = 1
	s.reply(8, max)
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
	old, err := u.CDState.OpenTray(force)
	ch.setIRQ()
	if err != nil {
		ch.mu.Unlock()
		return nil, err
	}
	q := u.q
	u.q = nil
	ch.gen++
	ch.mu.Unlock()
	if q != nil {
		q.Close()
	}
	return old, nil
}

// OpenTray is the drive's side of QMP's eject (ide_cd_eject_request_cb,
// then ide_cd_change_cb with load false): with the tray locked and force
// false only an eject request event is raised and ErrLocked returned;
// else the tray opens and the medium, returned, is removed. The caller
// raises the transport's interrupt either way.
func (s *CDState) OpenTray(force bool) (*block.Drive, error) {
	if s.trayLocked && !force {
		s.evEjectReq = true
		return nil, ErrLocked
	}
	if force {
		s.trayLocked = false
	}
	old := s.drv
	s.drv = nil
	s.nbSectors = 0
	s.trayOpen = true
	s.cdromChanged = 1
	s.evNewMedia = true
	s.evEjectReq = false
	return old, nil
}

// Insert puts drv in the empty drive and closes the tray (QMP's
// blockdev-change-medium after the eject; ide_cd_change_cb with load
// true): the next commands see NOT READY, then UNIT ATTENTION.
func (s *CDState) Insert(drv *block.Drive) error {
	if s.drv != nil {
		return errors.New("ide: the drive has a medium")
	}
	s.SetMedium(drv)
	s.trayOpen = false
	s.cdromChanged = 1
	s.evNewMedia = true
	s.evEjectReq = false
	return nil
}

// Tray reports whether the tray is open and whether the guest locked it.
func (s *CDState) Tray() (open, locked bool) { return s.trayOpen, s.trayLocked }

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
	if err := u.CDState.Insert(drv); err != nil {
		return err
	}
	u.setMedium(drv) // its queue
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

// SaveState writes the drive's tray, sense and change state (for a
// transport's snapshot record; the medium is not in it).
func (s *CDState) SaveState(w *savestate.Writer) {
	for _, v := range []uint8{s.senseKey, s.asc, s.cdromChanged} {
		w.U8(v)
	}
	for _, v := range []bool{s.trayOpen, s.trayLocked, s.evNewMedia, s.evEjectReq} {
		w.Bool(v)
	}
}

// LoadState reads what SaveState wrote into a scratch CDState; values out
// of range fail r.
func (s *CDState) LoadState(r *savestate.Reader) {
	for _, v := range []*uint8{&s.senseKey, &s.asc, &s.cdromChanged} {
		*v = r.U8()
	}
	for _, v := range []*bool{&s.trayOpen, &s.trayLocked, &s.evNewMedia, &s.evEjectReq} {
		*v = r.Bool()
	}
	if r.Err() == nil && (s.cdromChanged > 2 || s.senseKey > 0xf) {
		r.Fail(fmt.Errorf("cd-rom change state %d, sense key %d: %w", s.cdromChanged, s.senseKey, savestate.ErrFormat))
	}
}

// CopyStateFrom takes o's tray, sense and change state (a restore).
func (s *CDState) CopyStateFrom(o *CDState) {
	s.senseKey, s.asc, s.cdromChanged = o.senseKey, o.asc, o.cdromChanged
	s.trayOpen, s.trayLocked, s.evNewMedia, s.evEjectReq = o.trayOpen, o.trayLocked, o.evNewMedia, o.evEjectReq
}
