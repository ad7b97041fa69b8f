// Package xenstored is a simulated xenstored for tests and the demo: the
// xenstore tree with per-node permissions, implicit creation of parents,
// watches, and transactions, speaking the real wire protocol
// (hyp/xenstore) over Unix sockets, in-process socketpairs or a simulated
// /dev/xen/xenbus file.
//
// What it models (after xen tools/xenstored): nodes owned by a domain with
// an ACL (the first permission names the owner and the access of
// unlisted domains); dom0 is privileged. Every connection belongs to a
// domain: Listen and Serve connections are dom0, ServeAs, Attach, Pipe and
// XenbusFile choose. Relative paths are below /local/domain/<dom>. Writing
// a node creates missing parents, which inherit their parent's
// permissions (owned by the creator when unprivileged). Watches fire for
// changes at or below their path (a removed subtree fires each removed
// watched node), once on registration, and only for domains allowed to
// read the node; "@introduceDomain" and "@releaseDomain" fire on
// IntroduceDomain/ReleaseDomain (or XS_INTRODUCE/XS_RELEASE from dom0).
// Transactions work on a snapshot; a commit fails with EAGAIN if any node
// the transaction read or wrote changed since the snapshot; watch events
// of a transaction fire at commit. Payloads are bounded by
// XENSTORE_PAYLOAD_MAX: a request claiming more drops the connection, a
// directory listing that does not fit gives E2BIG (clients then use
// XS_DIRECTORY_PART). There are no quotas.
//
// What it does not model: domain rings and event channels, XS_CONTROL,
// XS_SET_TARGET, XS_RESUME (ENOSYS), quotas, persistence.
//
// # Lifecycle
//
// New returns a running store; Listen/Serve/Attach add connections; Close
// stops listeners and connections and waits for every goroutine. Close is
// idempotent.
//
// # Threading
//
// One lock serialises all requests, so operations are atomic with respect
// to each other. Each connection has a reader goroutine (requests are
// handled in order, one at a time, as xenstored does) and a writer
// goroutine draining an unbounded output queue, so a client that does not
// read its watch events never stalls the daemon.
package xenstored
