// Package qmp is a QEMU Machine Protocol server as libxl's client expects
// it (QEMU docs/interop/qmp-spec, monitor/qmp.c, qapi/qmp-dispatch.c;
// libxl tools/libs/light/libxl_qmp.c):
//
//   - on connect, a greeting {"QMP": {"version": {"qemu": {...}, "package":
//     ...}, "capabilities": []}};
//   - capabilities negotiation: until qmp_capabilities succeeds every other
//     command fails with CommandNotFound, and no event is delivered;
//   - requests {"execute": name, "arguments": {...}, "id": any}; the reply is
//     {"return": value, "id": ...} or {"error": {"class": ..., "desc": ...},
//     "id": ...}, the id echoed as given, of any JSON type;
//   - events {"timestamp": {"seconds": s, "microseconds": us}, "event": name,
//     "data": {...}} to every negotiated client of every monitor;
//   - every message ends with "\r\n": libxl splits the stream on it.
//
// A Server serves any number of monitors (listening sockets: libxl uses
// qmp-libxl-N and qmp-libxenstat-N, or a pre-opened fd), each with several
// clients at once. Commands come from an explicit table given by the caller;
// handlers run one at a time (like QEMU's commands under its big lock), so a
// handler needs no lock against another handler.
//
// Every byte from a client is hostile: messages are bounded in size (the
// connection gets an error and is closed beyond the bound) and nesting,
// malformed JSON gets a GenericError "JSON parse error, ..." and the stream
// resynchronises at the next top-level value, a client that does not read
// its replies or events is disconnected once its bounded queue fills, and
// never blocks another client or the emitter of an event.
package qmp
