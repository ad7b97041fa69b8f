package xenstored

import (
	"slices"
	"strconv"
	"testing"

	"godm/hyp"
	"godm/hyp/xenstore"
)

type nopRWC struct{}

func (nopRWC) Read(p []byte) (int, error)  { select {} }
func (nopRWC) Write(p []byte) (int, error) { return len(p), nil }
func (nopRWC) Close() error                { return nil }

// checkStore verifies the tree's structural invariants: the root exists,
// every node's parent exists and lists it, every listed child exists,
// children are sorted and unique, every node has an owner.
func checkStore(t *testing.T, what string, st store) {
	t.Helper()
	if st["/"] == nil {
		t.Fatalf("%s: root missing", what)
	}
	for p, n := range st {
		if len(n.perms) == 0 {
			t.Fatalf("%s: %s has no permissions", what, p)
		}
		if !slices.IsSorted(n.children) || len(slices.Compact(slices.Clone(n.children))) != len(n.children) {
			t.Fatalf("%s: %s children %q not sorted and unique", what, p, n.children)
		}
		for _, c := range n.children {
			if st[join(p, c)] == nil {
				t.Fatalf("%s: %s lists missing child %s", what, p, c)
			}
		}
		if p == "/" {
			continue
		}
		if !validPath(p) {
			t.Fatalf("%s: invalid path %q stored", what, p)
		}
		par := st[parent(p)]
		if par == nil {
			t.Fatalf("%s: %s has no parent", what, p)
		}
		if _, found := slices.BinarySearch(par.children, base(p)); !found {
			t.Fatalf("%s: parent of %s does not list it", what, p)
		}
	}
}

var fuzzPaths = []string{
	"/a", "/a/b", "/a/b/c", "/local/domain/5", "/local/domain/5/x", "x", "x/y",
	"/", "@introduceDomain", "@releaseDomain", "/a//b", "", "/a/", "/bad path", "/local/domain/6/z",
}

var fuzzTypes = []xenstore.MsgType{
	xenstore.MsgRead, xenstore.MsgWrite, xenstore.MsgMkdir, xenstore.MsgRm, xenstore.MsgDirectory,
	xenstore.MsgGetPerms, xenstore.MsgSetPerms, xenstore.MsgWatch, xenstore.MsgUnwatch,
	xenstore.MsgTransactionStart, xenstore.MsgTransactionEnd, xenstore.MsgDirectoryPart,
	xenstore.MsgGetDomainPath, xenstore.MsgIntroduce, xenstore.MsgRelease, xenstore.MsgResetWatches,
	xenstore.MsgIsDomainIntroduced,
}

// FuzzOps runs scripts of requests from three domains (0, 5, 6) against
// the store, with and without transactions, and checks after every
// request that exactly one reply was queued with the request's ids and
// that the live tree and every transaction snapshot stay well formed.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 1, 3, 0, 0, 1, 0})
	f.Add([]byte{0, 9, 0, 0, 0, 1, 2, 0x81, 1, 1, 4, 0x81, 0, 10, 0, 0x81})
	f.Add([]byte{1, 1, 6, 2, 0, 6, 3, 1, 2, 0, 4, 0, 1, 7, 0, 0, 0, 3, 0, 0})
	f.Add([]byte{0, 7, 7, 0, 0, 13, 0, 5, 0, 14, 0, 5, 2, 8, 7, 0})
	f.Fuzz(func(t *testing.T, script []byte) {
		s := New(Config{})
		doms := []hyp.DomID{0, 5, 6}
		conns := make([]*conn, len(doms))
		lastTx := make([]uint32, len(doms))
		for i, d := range doms {
			conns[i] = &conn{s: s, dom: d, rwc: nopRWC{}, notify: make(chan struct{}, 1), quit: make(chan struct{})}
			s.conns[conns[i]] = struct{}{}
		}
		reqID := uint32(0)
		for len(script) >= 4 {
			ci := int(script[0]) % len(conns)
			typ := fuzzTypes[int(script[1])%len(fuzzTypes)]
			p := fuzzPaths[int(script[2])%len(fuzzPaths)]
			arg := script[3]
			script = script[4:]
			c := conns[ci]
			var txID uint32
			if arg&0x80 != 0 {
				txID = lastTx[ci]
			}
			var payload []byte
			switch typ {
			case xenstore.MsgWrite:
				payload = append(append([]byte(p), 0), slices.Repeat([]byte{'v'}, int(arg&0x7))...)
			case xenstore.MsgSetPerms:
				payload = append([]byte(p), 0)
				for k := 0; k <= int(arg&3); k++ {
					payload = append(payload, "nrwb"[(int(arg)>>2+k)&3])
					payload = strconv.AppendInt(payload, int64(doms[(int(arg)+k)%3]), 10)
					payload = append(payload, 0)
				}
			case xenstore.MsgWatch, xenstore.MsgUnwatch:
				payload = append(append(append([]byte(p), 0), 't', '0'+arg&3), 0)
			case xenstore.MsgTransactionStart:
				payload = []byte{0}
			case xenstore.MsgTransactionEnd:
				payload = []byte{"TF"[arg&1], 0}
			case xenstore.MsgDirectoryPart:
				payload = append(append([]byte(p), 0), strconv.Itoa(int(arg&0x3f))...)
				payload = append(payload, 0)
			case xenstore.MsgGetDomainPath, xenstore.MsgIntroduce, xenstore.MsgRelease, xenstore.MsgIsDomainIntroduced:
				payload = append(strconv.AppendInt(nil, int64(arg&0xf), 10), 0)
			default:
				payload = append([]byte(p), 0)
			}
			reqID++
			c.outMu.Lock()
			c.out = nil
			c.outMu.Unlock()
			// The deferred Unlock lets go of the store's lock when a
			// check fails (t.Fatal ends the goroutine but runs defers).
			func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.handle(c, xenstore.Header{Type: typ, ReqID: reqID, TxID: txID, Len: uint32(len(payload))}, payload)
				checkStore(t, "live", s.live)
				for id, tx := range s.txs {
					checkStore(t, "tx "+strconv.Itoa(int(id)), tx.st)
				}
			}()

			c.outMu.Lock()
			out := c.out
			c.outMu.Unlock()
			replies := 0
			for _, m := range out {
				h, err := xenstore.DecodeHeader(m)
				if err != nil {
					t.Fatalf("queued message does not decode: %v", err)
				}
				if h.Type == xenstore.MsgWatchEvent {
					continue
				}
				replies++
				if h.ReqID != reqID || h.TxID != txID {
					t.Fatalf("reply ids %d/%d, want %d/%d", h.ReqID, h.TxID, reqID, txID)
				}
				if h.Type != typ && h.Type != xenstore.MsgError {
					t.Fatalf("reply type %v to %v", h.Type, typ)
				}
				if typ == xenstore.MsgTransactionStart && h.Type == typ {
					id, err := strconv.ParseUint(string(m[xenstore.HeaderSize:len(m)-1]), 10, 32)
					if err != nil {
						t.Fatalf("transaction id %q", m[xenstore.HeaderSize:])
					}
					lastTx[ci] = uint32(id)
				}
			}
			if replies != 1 {
				t.Fatalf("%v: %d replies queued, want 1", typ, replies)
			}
		}
	})
}
