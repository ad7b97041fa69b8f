package chardev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Stream is a backend over host files: an optional input file read by a
// reader goroutine and an optional output file written by the writer
// goroutine. It owns both files and closes them on Close.
type Stream struct {
	*core
	in, out *os.File
	opt     Options

	closeOnce sync.Once
	closeErr  error
	// eioRetry makes the reader wait and retry on read errors other than
	// EOF and closure (a pty master reads EIO while no one holds the
	// slave open).
	eioRetry bool
	// onClose runs after the files are closed (Stdio puts back the flags
	// of descriptions it shares with the caller).
	onClose []func()
}

var _ Backend = (*Stream)(nil)

// NewStream returns a backend reading from in and writing to out; either
// may be nil. The Stream takes ownership of both files. For Close to stop a
// blocked read, in should be pollable (a pipe, socket or terminal opened
// non-blocking, as os.Pipe and OpenPTY give).
func NewStream(in, out *os.File, opt Options) *Stream {
	s := &Stream{core: newCore(opt), in: in, out: out, opt: opt}
	s.start()
	return s
}

func (s *Stream) start() {
	if s.out != nil {
		out := s.out
		s.startWriter(func(p []byte) (int, error) { return out.Write(p) }, func() {
			_ = out.SetWriteDeadline(time.Now().Add(s.opt.flushTimeout()))
		})
	} else {
		// No output file: behave like null for output.
		s.startWriter(func(p []byte) (int, error) { return len(p), nil }, nil)
	}
	if s.in != nil {
		s.wg.Add(1)
		go s.readLoop()
	}
}

func (s *Stream) readLoop() {
	defer s.wg.Done()
	var buf [4096]byte
	for {
		n, err := s.in.Read(buf[:])
		if n > 0 {
			if !s.deliver(buf[:n]) {
				return
			}
			s.note(evInput)
		}
		if err == nil {
			continue
		}
		if s.closed() || errors.Is(err, os.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		if !s.eioRetry || errors.Is(err, io.EOF) {
			// End of input; output keeps working.
			return
		}
		t := time.NewTimer(s.opt.retryInterval())
		select {
		case <-t.C:
		case <-s.done:
			t.Stop()
			return
		}
	}
}

// Close implements Backend. It flushes buffered output for at most
// Options.FlushTimeout, stops the goroutines and closes the files.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() { s.closeErr = s.close() })
	return s.closeErr
}

func (s *Stream) close() error {
	var errs []error
	s.shutdown(func() {
		if s.out != nil {
			// Bound a write already blocked on a stalled reader.
			_ = s.out.SetWriteDeadline(time.Now().Add(s.opt.flushTimeout()))
		}
		if s.in != nil {
			if err := s.in.SetReadDeadline(time.Now()); err != nil {
				// Not pollable: closing is the only way to interrupt.
				if cerr := s.in.Close(); cerr != nil && !errors.Is(cerr, os.ErrClosed) {
					errs = append(errs, cerr)
				}
			}
		}
	})
	for _, f := range []*os.File{s.in, s.out} {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, fmt.Errorf("chardev: close %s: %w", f.Name(), err))
		}
	}
	for _, f := range s.onClose {
		f()
	}
	return errors.Join(errs...)
}
