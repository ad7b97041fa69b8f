// Package xenstore is a xenstore client in pure Go: the wire protocol of
// xen/include/public/io/xs_wire.h (struct xsd_sockmsg, XS_* messages,
// error names) spoken over xenstored's Unix socket or the xenbus device
// file reached through the kernel seam (hyp/kernel).
//
// It is not a daemon (see hyp/xensim/xenstored for a simulated one) and
// does not implement domain management requests (XS_INTRODUCE and
// friends), which only the toolstack sends.
//
// # Lifecycle
//
// Dial, Open or OpenXenbus connect and return a *Client; New wraps any
// connected io.ReadWriteCloser. Close ends the connection, stops the
// Client's reader goroutine, fails outstanding requests with
// hyp.ErrClosed and closes all watch event channels; it is idempotent.
// Where to connect is injected: SocketPath follows libxenstore's
// XENSTORED_PATH / XENSTORED_RUNDIR rules with a caller-supplied getenv.
//
// # Threading
//
// A Client is safe for concurrent use. Requests from any goroutine are
// multiplexed over one connection, each with its own req_id; one reader
// goroutine matches replies to requests and routes watch events (by
// token) to per-watch queues, so a slow watch consumer never blocks
// replies. Transactions (Tx) are handles on the same Client; Transact
// retries a transaction that fails with EAGAIN.
//
// # Errors
//
// Errors returned by xenstored (XS_ERROR replies) are unix.Errno values,
// wrapped with the operation and path, so errors.Is(err, unix.ENOENT)
// works. A reply that breaks the protocol gives an error wrapping
// ErrProtocol; a malformed message never panics the Client.
package xenstore
