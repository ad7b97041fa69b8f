package mpqemu

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

func msg(cmd int32, payload []byte) []byte {
	b := make([]byte, hdrSize, hdrSize+len(payload))
	binary.LittleEndian.PutUint32(b[0:], uint32(cmd))
	binary.LittleEndian.PutUint64(b[8:], uint64(len(payload)))
	return append(b, payload...)
}

// FuzzServe feeds Serve an arbitrary byte stream from QEMU's side: it must
// end when the stream does, with nil or an error (ErrProtocol for a
// malformed message, a wrapped read error for a truncated one), never
// panic or hang, and answer only with well-formed RET messages.
func FuzzServe(f *testing.F) {
	f.Add(msg(CmdPCICfgRead, cfgMsg(0, 0, 4)))
	f.Add(append(msg(CmdPCICfgWrite, cfgMsg(4, 7, 2)), msg(CmdPCICfgRead, cfgMsg(4, 0, 2))...))
	f.Add(append(msg(CmdBARWrite, barMsg(0x1000, 5, 4, true)), msg(CmdBARRead, barMsg(0x1000, 0, 4, true))...))
	f.Add(msg(CmdDeviceReset, nil))
	f.Add(msg(CmdSyncSysmem, make([]byte, maxPayload)))
	f.Add(msg(CmdSetIRQFD, nil))
	f.Add(msg(CmdBARRead, barMsg(0, 0, 3, false)))
	f.Add(msg(CmdPCICfgRead, cfgMsg(0, 0, 8)))
	f.Add(msg(99, nil))
	f.Add(msg(CmdRet, make([]byte, 8)))
	f.Add(msg(CmdPCICfgRead, nil)[:10])
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := pair(t)
		defer a.Close()
		dev := &fakeDev{bars: map[uint64]uint64{}}
		done := make(chan error, 1)
		go func() { done <- Serve(context.Background(), b, dev) }()
		replies := make(chan []byte, 1)
		go func() {
			r, _ := io.ReadAll(a)
			replies <- r
		}()
		// Serve may stop reading (and close) at a malformed message, so
		// the write may fail; that is not the device side's failure.
		// A Serve that stops reading without ending would block this
		// Write for good once the socket buffer is full: the deadline
		// turns that into the timeout failure below.
		a.SetWriteDeadline(time.Now().Add(10 * time.Second))
		a.Write(in)
		a.CloseWrite()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not end 10 s after the stream did")
		}
		if err != nil && !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			t.Errorf("Serve = %v, want nil, ErrProtocol or a truncated message", err)
		}
		r := <-replies
		if len(r)%(hdrSize+8) != 0 {
			t.Fatalf("replies are %d bytes, not a whole number of RET messages", len(r))
		}
		for ; len(r) > 0; r = r[hdrSize+8:] {
			if cmd, size := binary.LittleEndian.Uint32(r), binary.LittleEndian.Uint64(r[8:]); cmd != CmdRet || size != 8 {
				t.Fatalf("reply cmd %d size %d, want RET of 8 bytes", cmd, size)
			}
		}
		for _, reg := range dev.regions {
			reg.File.Close()
		}
	})
}
