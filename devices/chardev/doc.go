// Package chardev provides host-side character backends for emulated
// devices such as the 16550A UART: stdio, an output file, a pseudo-terminal,
// a Unix-socket server accepting one client at a time, and null.
//
// A Backend moves bytes in two directions:
//
//   - Output (device → host). Write never blocks: it copies into a bounded
//     ring owned by the backend and a writer goroutine, also owned by the
//     backend, drains the ring into the host file descriptor. When the host
//     side is slow and the ring is full, the excess is dropped and counted
//     (Stats.Dropped). Write is meant for a device's register handler.
//   - Input (host → device). A reader goroutine owned by the backend offers
//     the bytes it reads to the attached Sink. A Sink takes what it has room
//     for; the reader then waits until the device calls Ready, which gives
//     back-pressure to the host (a pasted megabyte waits in the pty or socket
//     instead of overrunning a 16-byte FIFO).
//
// Lifecycle: construct with one of the New/Open/Listen functions, Attach a
// Sink, use, Close. Close is idempotent and returns only after every
// goroutine the backend started has stopped.
//
// Threading: Write must not be called concurrently with itself (a device
// calls it under its own lock); Ready, Attach, Stats and Close may be called
// from any goroutine. Write and Ready allocate nothing and take no lock.
package chardev
