// Package golden loads the golden ABI fixtures: what the reference C
// libraries (Debian libxen-dev, Xen 4.17: libxendevicemodel,
// libxenforeignmemory, libxenevtchn, libxencall, libxenctrl) hand the dom0
// kernel for one library call, captured by tools/xencapture and committed
// under hyp/testdata/golden/<name>.json. Tests compare godm's own encodings
// against them byte for byte.
//
// # Fixture format
//
// A fixture is one JSON object:
//
//	{
//	  "name":   "dm_create_ioreq_server",          // file name without .json
//	  "call":   "xendevicemodel_create_ioreq_server(h, 7, 2, &id)",
//	  "result": "rc=0 id=1",                       // what the library returned
//	  "events": [ Event, ... ]                     // in the order they happened
//	}
//
// Each Event has a "kind" and the device ("dev": privcmd, hypercall,
// evtchn or xenbus) of the file it happened on:
//
//   - "open": "flags" are the open(2) flags the library passed, masked to
//     O_ACCMODE|O_NONBLOCK|O_CLOEXEC.
//   - "close".
//   - "ioctl": "req" (request number), "req_name" (its C name), "arg" (the
//     argument struct, a Buffer), "buffers" (every buffer reachable from
//     "arg" through pointer fields, a flat list, a Buffer each) and "ret"
//     (what the fake kernel answered: the ioctl result, or -errno).
//   - "mmap": "offset", "length", "prot" (PROT_* bits), "flags" (MAP_* bits).
//   - "munmap": "length".
//   - "read": "length" (bytes asked for) and "data" (hex, what the fake
//     kernel answered).
//   - "write": "data" (hex, the bytes written).
//
// A Buffer is { "name", "hex", "len", "out", "undef", "ptrs" }. "hex" is the bytes
// the library passed, as hex in groups of four bytes separated by spaces
// (spaces are ignored when loading); pointer fields inside it are zeroed,
// because pointer values differ from run to run. "len" is the length;
// a buffer with "len" but no "hex" is output only (e.g. the error array of
// IOCTL_PRIVCMD_MMAPBATCH_V2), its input contents are not meaningful.
// "out", when present, is the buffer after the fake kernel wrote its
// answer (e.g. the server id of XEN_DMOP_create_ioreq_server), with
// pointer fields zeroed too. "undef" lists [offset, length] ranges the
// library leaves undefined: compiler padding, reserved fields it does not
// initialise (e.g. xen_domctl._pad) and union space the command does not
// use; they are zero in "hex" and "out" and comparisons ignore them. The
// capture finds them by running every call twice with different stack and
// heap poison, and fails if a differing byte is not known to be one of
// these. "ptrs" lists the pointer fields:
//
//	{ "off": 8, "buf": 1, "region": "user", "region_off": 0 }
//
// "off" is the byte offset of the 8-byte pointer inside the buffer, "buf"
// the index in the event's "buffers" of what it points to (-1: NULL or not
// recorded), and "region" where it points: "null", "user" (ordinary memory
// of the process), "hypercall" (inside a mapping of /dev/xen/hypercall,
// the hypercall buffers; "region_off" is then the offset inside that
// mapping) or "mmap" (the start of a mapping of the device, e.g. the addr of
// IOCTL_PRIVCMD_MMAP_RESOURCE). Comparisons ignore "region_off".
//
// Examples: IOCTL_PRIVCMD_DM_OP has arg = struct privcmd_dm_op (ubufs
// points to buffers[0]), buffers[0] = the privcmd_dm_op_buf array (each
// uptr points to buffers[1+i]), then the DM-op buffers. IOCTL_PRIVCMD_HYPERCALL
// has arg = struct privcmd_hypercall; each pointer argument points into the
// hypercall buffers, with the length known per hypercall and sub-op, and
// nested guest handles (e.g. xen_memory_reservation.extent_start) are
// pointers of that buffer.
//
// Fixtures are deterministic: no pointer values, no timestamps, no pids.
//
// # Use
//
// Load is called from tests only; fixtures are immutable once loaded and
// may be shared between goroutines.
package golden
