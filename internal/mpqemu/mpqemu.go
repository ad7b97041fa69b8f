package mpqemu

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Commands of the mpqemu protocol (QEMU 7.2 include/hw/remote/mpqemu-link.h,
// enum MPQemuCmd).
const (
	CmdSyncSysmem  = 0
	CmdRet         = 1
	CmdPCICfgWrite = 2
	CmdPCICfgRead  = 3
	CmdBARWrite    = 4
	CmdBARRead     = 5
	CmdSetIRQFD    = 6
	CmdDeviceReset = 7
)

const (
	hdrSize    = 16  // offsetof(MPQemuMsg, data.u64)
	maxFDs     = 8   // REMOTE_MAX_FDS
	maxPayload = 192 // sizeof(SyncSysmemMsg), the largest union member
	cfgMsgSize = 12  // PciConfDataMsg{u32 addr, u32 val, int len}
	barMsgSize = 24  // BarAccessMsg{hwaddr addr, u64 val, unsigned size, bool memory}
)

// Region is one guest RAM region QEMU shares through SYNC_SYSMEM: Size bytes
// at guest-physical GPA, backed by File at Offset. The Device owns File.
type Region struct {
	GPA, Size, Offset uint64
	File              *os.File
}

// Device is the PCI function served to QEMU. Values are little-endian in the
// low bytes. BAR accesses carry the absolute bus address (BAR base plus
// offset), so the device tracks its BAR bases from its own config writes.
type Device interface {
	ConfigRead(addr uint32, size int) uint32
	ConfigWrite(addr uint32, val uint32, size int)
	BARRead(addr uint64, size int, memory bool) uint64
	BARWrite(addr uint64, val uint64, size int, memory bool)
	Reset()
	// SyncSysmem replaces the guest memory layout. The previous regions'
	// files are the device's to close.
	SyncSysmem(regions []Region)
}

// ErrProtocol is wrapped by errors for malformed messages from QEMU.
var ErrProtocol = errors.New("mpqemu: protocol error")

// Serve answers QEMU's messages on conn until QEMU closes it (nil), ctx is
// cancelled, or a protocol error occurs. It closes conn on return.
func Serve(ctx context.Context, conn *net.UnixConn, dev Device) error {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	hdr := make([]byte, hdrSize)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	payload := make([]byte, maxPayload)
	reply := make([]byte, hdrSize+8)
	for {
		n, oobn, _, _, err := conn.ReadMsgUnix(hdr, oob)
		if err != nil || n == 0 {
			if ctx.Err() != nil || err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("mpqemu: read header: %w", err)
		}
		files, err := parseFDs(oob[:oobn])
		if err != nil {
			return err
		}
		if n < hdrSize {
			if _, err := io.ReadFull(conn, hdr[n:]); err != nil {
				closeAll(files)
				return fmt.Errorf("mpqemu: short header: %w", err)
			}
		}
		cmd := int32(binary.LittleEndian.Uint32(hdr[0:]))
		size := binary.LittleEndian.Uint64(hdr[8:])
		if size > maxPayload {
			closeAll(files)
			return fmt.Errorf("%w: payload size %d for cmd %d", ErrProtocol, size, cmd)
		}
		p := payload[:size]
		if _, err := io.ReadFull(conn, p); err != nil {
			closeAll(files)
			return fmt.Errorf("mpqemu: read payload: %w", err)
		}
		ret, hasRet, err := handle(dev, cmd, p, files)
		if err != nil {
			return err
		}
		if !hasRet {
			continue
		}
		binary.LittleEndian.PutUint32(reply[0:], CmdRet)
		binary.LittleEndian.PutUint32(reply[4:], 0)
		binary.LittleEndian.PutUint64(reply[8:], 8)
		binary.LittleEndian.PutUint64(reply[16:], ret)
		if _, err := conn.Write(reply); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("mpqemu: write reply: %w", err)
		}
	}
}

func handle(dev Device, cmd int32, p []byte, files []*os.File) (ret uint64, hasRet bool, err error) {
	le := binary.LittleEndian
	switch cmd {
	case CmdPCICfgRead, CmdPCICfgWrite:
		closeAll(files)
		if len(p) != cfgMsgSize {
			return 0, false, fmt.Errorf("%w: config message of %d bytes", ErrProtocol, len(p))
		}
		addr, val, n := le.Uint32(p[0:]), le.Uint32(p[4:]), int(int32(le.Uint32(p[8:])))
		if n != 1 && n != 2 && n != 4 {
			return ^uint64(0), true, nil
		}
		if cmd == CmdPCICfgRead {
			return uint64(dev.ConfigRead(addr, n)), true, nil
		}
		dev.ConfigWrite(addr, val, n)
		return 0, true, nil
	case CmdBARRead, CmdBARWrite:
		closeAll(files)
		if len(p) != barMsgSize {
			return 0, false, fmt.Errorf("%w: BAR message of %d bytes", ErrProtocol, len(p))
		}
		addr, val, n, mem := le.Uint64(p[0:]), le.Uint64(p[8:]), int(le.Uint32(p[16:])), p[20] != 0
		if n != 1 && n != 2 && n != 4 && n != 8 {
			return ^uint64(0), true, nil
		}
		if cmd == CmdBARRead {
			return dev.BARRead(addr, n, mem), true, nil
		}
		dev.BARWrite(addr, val, n, mem)
		return 0, true, nil
	case CmdDeviceReset:
		closeAll(files)
		dev.Reset()
		return 0, true, nil
	case CmdSyncSysmem:
		if len(p) != maxPayload {
			closeAll(files)
			return 0, false, fmt.Errorf("%w: SYNC_SYSMEM of %d bytes", ErrProtocol, len(p))
		}
		regions := make([]Region, len(files))
		for i, f := range files {
			regions[i] = Region{
				GPA:    le.Uint64(p[8*i:]),
				Size:   le.Uint64(p[64+8*i:]),
				Offset: le.Uint64(p[128+8*i:]),
				File:   f,
			}
		}
		dev.SyncSysmem(regions)
		return 0, false, nil
	case CmdSetIRQFD:
		// The eventfds are only wired under KVM; under TCG interrupts reach
		// the guest through qtest instead (ORACLES.md §4).
		closeAll(files)
		return 0, false, nil
	}
	closeAll(files)
	return 0, false, fmt.Errorf("%w: unknown command %d", ErrProtocol, cmd)
}

func parseFDs(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("mpqemu: control message: %w", err)
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "mpqemu-fd"))
		}
	}
	if len(files) > maxFDs {
		closeAll(files)
		return nil, fmt.Errorf("%w: %d fds", ErrProtocol, len(files))
	}
	return files, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
