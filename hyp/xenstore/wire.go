package xenstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// MsgType is a xenstore message type (enum xsd_sockmsg_type,
// xen/include/public/io/xs_wire.h).
type MsgType uint32

// The message types of the xenstore wire protocol, in xs_wire.h order.
const (
	MsgControl            MsgType = 0      // XS_CONTROL (alias XS_DEBUG)
	MsgDirectory          MsgType = 1      // XS_DIRECTORY
	MsgRead               MsgType = 2      // XS_READ
	MsgGetPerms           MsgType = 3      // XS_GET_PERMS
	MsgWatch              MsgType = 4      // XS_WATCH
	MsgUnwatch            MsgType = 5      // XS_UNWATCH
	MsgTransactionStart   MsgType = 6      // XS_TRANSACTION_START
	MsgTransactionEnd     MsgType = 7      // XS_TRANSACTION_END
	MsgIntroduce          MsgType = 8      // XS_INTRODUCE
	MsgRelease            MsgType = 9      // XS_RELEASE
	MsgGetDomainPath      MsgType = 10     // XS_GET_DOMAIN_PATH
	MsgWrite              MsgType = 11     // XS_WRITE
	MsgMkdir              MsgType = 12     // XS_MKDIR
	MsgRm                 MsgType = 13     // XS_RM
	MsgSetPerms           MsgType = 14     // XS_SET_PERMS
	MsgWatchEvent         MsgType = 15     // XS_WATCH_EVENT
	MsgError              MsgType = 16     // XS_ERROR
	MsgIsDomainIntroduced MsgType = 17     // XS_IS_DOMAIN_INTRODUCED
	MsgResume             MsgType = 18     // XS_RESUME
	MsgSetTarget          MsgType = 19     // XS_SET_TARGET
	MsgResetWatches       MsgType = 21     // XS_RESET_WATCHES (XS_SET_TARGET + 2; 20 was XS_RESTRICT)
	MsgDirectoryPart      MsgType = 22     // XS_DIRECTORY_PART
	MsgTypeCount          MsgType = 23     // XS_TYPE_COUNT: number of valid types
	MsgInvalid            MsgType = 0xffff // XS_INVALID
)

var msgTypeNames = [...]string{
	MsgControl:            "CONTROL",
	MsgDirectory:          "DIRECTORY",
	MsgRead:               "READ",
	MsgGetPerms:           "GET_PERMS",
	MsgWatch:              "WATCH",
	MsgUnwatch:            "UNWATCH",
	MsgTransactionStart:   "TRANSACTION_START",
	MsgTransactionEnd:     "TRANSACTION_END",
	MsgIntroduce:          "INTRODUCE",
	MsgRelease:            "RELEASE",
	MsgGetDomainPath:      "GET_DOMAIN_PATH",
	MsgWrite:              "WRITE",
	MsgMkdir:              "MKDIR",
	MsgRm:                 "RM",
	MsgSetPerms:           "SET_PERMS",
	MsgWatchEvent:         "WATCH_EVENT",
	MsgError:              "ERROR",
	MsgIsDomainIntroduced: "IS_DOMAIN_INTRODUCED",
	MsgResume:             "RESUME",
	MsgSetTarget:          "SET_TARGET",
	MsgResetWatches:       "RESET_WATCHES",
	MsgDirectoryPart:      "DIRECTORY_PART",
}

// String returns the type's xs_wire.h name without the XS_ prefix.
func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint32(t))
}

// Protocol limits (xs_wire.h).
const (
	// HeaderSize is sizeof(struct xsd_sockmsg).
	HeaderSize = 16
	// PayloadMax is XENSTORE_PAYLOAD_MAX: the largest payload either
	// side may send.
	PayloadMax = 4096
	// AbsPathMax is XENSTORE_ABS_PATH_MAX.
	AbsPathMax = 3072
	// RelPathMax is XENSTORE_REL_PATH_MAX.
	RelPathMax = 2048
)

// ErrProtocol is wrapped by errors for messages that break the wire
// protocol: an oversized length, a truncated message, a reply of the wrong
// type, a payload that does not parse.
var ErrProtocol = errors.New("xenstore: protocol violation")

// Header is struct xsd_sockmsg. Fields are in host byte order on the wire
// (the daemon and its clients share a machine).
type Header struct {
	Type  MsgType // XS_*
	ReqID uint32  // request identifier, echoed in the reply
	TxID  uint32  // transaction id, 0 outside transactions
	Len   uint32  // payload length
}

// Append appends the header's wire form to b.
func (h Header) Append(b []byte) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(h.Type))
	b = binary.NativeEndian.AppendUint32(b, h.ReqID)
	b = binary.NativeEndian.AppendUint32(b, h.TxID)
	return binary.NativeEndian.AppendUint32(b, h.Len)
}

// DecodeHeader decodes a header from the first HeaderSize bytes of b. It
// rejects a short buffer and a Len beyond PayloadMax with errors wrapping
// ErrProtocol.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("%w: header of %d bytes", ErrProtocol, len(b))
	}
	h := Header{
		Type:  MsgType(binary.NativeEndian.Uint32(b[0:])),
		ReqID: binary.NativeEndian.Uint32(b[4:]),
		TxID:  binary.NativeEndian.Uint32(b[8:]),
		Len:   binary.NativeEndian.Uint32(b[12:]),
	}
	if h.Len > PayloadMax {
		return h, fmt.Errorf("%w: payload length %d exceeds %d", ErrProtocol, h.Len, PayloadMax)
	}
	return h, nil
}

// AppendMsg appends a whole message (header and the concatenation of
// parts as payload) to b. A payload beyond PayloadMax gives an error
// wrapping unix.E2BIG, as libxenstore's xs_talkv does.
func AppendMsg(b []byte, typ MsgType, reqID, txID uint32, parts ...[]byte) ([]byte, error) {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > PayloadMax {
		return b, fmt.Errorf("xenstore: %v payload of %d bytes: %w", typ, n, unix.E2BIG)
	}
	b = Header{Type: typ, ReqID: reqID, TxID: txID, Len: uint32(n)}.Append(b)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b, nil
}

// ReadMsg reads one message from r. The payload is a new slice. A clean
// end of stream before the first header byte gives io.EOF; a truncated
// message or an oversized length gives an error wrapping ErrProtocol (the
// stream is then unusable).
func ReadMsg(r io.Reader) (Header, []byte, error) {
	var hb [HeaderSize]byte
	if n, err := io.ReadFull(r, hb[:]); err != nil {
		if err == io.EOF && n == 0 {
			return Header{}, nil, io.EOF
		}
		return Header{}, nil, fmt.Errorf("%w: reading header: %w", ErrProtocol, err)
	}
	h, err := DecodeHeader(hb[:])
	if err != nil {
		return h, nil, err
	}
	payload := make([]byte, h.Len)
	if _, err := io.ReadFull(r, payload); err != nil {
		return h, nil, fmt.Errorf("%w: reading %d byte payload of %v: %w", ErrProtocol, h.Len, h.Type, err)
	}
	return h, payload, nil
}

// xsdErrors is struct xsd_errors xsd_errors[] of xs_wire.h, in its order.
var xsdErrors = [...]struct {
	errno unix.Errno
	name  string
}{
	{unix.EINVAL, "EINVAL"},
	{unix.EACCES, "EACCES"},
	{unix.EEXIST, "EEXIST"},
	{unix.EISDIR, "EISDIR"},
	{unix.ENOENT, "ENOENT"},
	{unix.ENOMEM, "ENOMEM"},
	{unix.ENOSPC, "ENOSPC"},
	{unix.EIO, "EIO"},
	{unix.ENOTEMPTY, "ENOTEMPTY"},
	{unix.ENOSYS, "ENOSYS"},
	{unix.EROFS, "EROFS"},
	{unix.EBUSY, "EBUSY"},
	{unix.EAGAIN, "EAGAIN"},
	{unix.EISCONN, "EISCONN"},
	{unix.E2BIG, "E2BIG"},
	{unix.EPERM, "EPERM"},
}

// ParseError maps the payload of an XS_ERROR reply (an error name such as
// "ENOENT", optionally nul-terminated) to its errno. Unknown names map to
// EINVAL, as libxenstore's get_error does.
func ParseError(payload []byte) unix.Errno {
	name := string(trimNul(payload))
	for _, e := range xsdErrors {
		if e.name == name {
			return e.errno
		}
	}
	return unix.EINVAL
}

// ErrorName returns the xs_wire.h name of errno (the payload of an
// XS_ERROR reply without its nul), and false for an errno the protocol has
// no name for.
func ErrorName(errno unix.Errno) (string, bool) {
	for _, e := range xsdErrors {
		if e.errno == errno {
			return e.name, true
		}
	}
	return "", false
}

// trimNul drops one trailing nul.
func trimNul(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == 0 {
		return b[:len(b)-1]
	}
	return b
}

// SplitStrings splits a payload of nul-terminated strings (a directory
// listing, a permission list, a watch event). An empty payload is no
// strings. A payload whose last string lacks its nul is malformed.
func SplitStrings(payload []byte) ([]string, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	if payload[len(payload)-1] != 0 {
		return nil, fmt.Errorf("%w: string list without final nul", ErrProtocol)
	}
	payload = payload[:len(payload)-1]
	n := bytes.Count(payload, []byte{0}) + 1
	out := make([]string, 0, n)
	for {
		i := bytes.IndexByte(payload, 0)
		if i < 0 {
			return append(out, string(payload)), nil
		}
		out = append(out, string(payload[:i]))
		payload = payload[i+1:]
	}
}

// cstr returns s as a nul-terminated byte slice.
func cstr(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}

// Event is one watch event (XS_WATCH_EVENT): the path that changed (as
// seen by the watch: relative if the watch was registered with a relative
// path) and the watch's token.
type Event struct {
	Path  string
	Token string
}

// ParseEvent parses an XS_WATCH_EVENT payload: path and token, each
// nul-terminated. Further strings are ignored, as libxenstore does.
func ParseEvent(payload []byte) (Event, error) {
	s, err := SplitStrings(payload)
	if err != nil {
		return Event{}, err
	}
	if len(s) < 2 {
		return Event{}, fmt.Errorf("%w: watch event with %d strings", ErrProtocol, len(s))
	}
	return Event{Path: s[0], Token: s[1]}, nil
}

// AppendEvent appends the XS_WATCH_EVENT payload for ev to b.
func AppendEvent(b []byte, ev Event) []byte {
	b = append(b, ev.Path...)
	b = append(b, 0)
	b = append(b, ev.Token...)
	return append(b, 0)
}
