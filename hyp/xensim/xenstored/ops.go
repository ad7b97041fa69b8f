package xenstored

import (
	"bytes"
	"slices"
	"strconv"
	"strings"

	"godm/hyp"
	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

// ack is the payload of a successful reply without data.
const ack = "OK\x00"

// handle processes one request and queues its reply (and any watch events
// it causes, ahead of the reply, as xenstored does).
//
// +checklocks:s.mu
func (s *Server) handle(c *conn, h xenstore.Header, payload []byte) {
	reply, errno := s.dispatch(c, h, payload)
	rh := xenstore.Header{Type: h.Type, ReqID: h.ReqID, TxID: h.TxID}
	if errno != 0 {
		name, known := xenstore.ErrorName(errno)
		if !known {
			name = "EIO"
		}
		rh.Type = xenstore.MsgError
		reply = append([]byte(name), 0)
	}
	c.queue(rh, reply)
	if errno == 0 && h.Type == xenstore.MsgWatch {
		// The initial event follows the acknowledgement (do_watch: "We
		// fire once up front").
		w := c.watches[len(c.watches)-1]
		c.queue(xenstore.Header{Type: xenstore.MsgWatchEvent},
			xenstore.AppendEvent(nil, xenstore.Event{Path: eventPath(w, w.path), Token: w.token}))
	}
}

// onearg returns the single nul-terminated string that must make up the
// whole payload (onearg in xenstored_core.c).
func onearg(payload []byte) (string, bool) {
	if len(payload) == 0 || payload[len(payload)-1] != 0 {
		return "", false
	}
	s := payload[:len(payload)-1]
	if bytes.IndexByte(s, 0) >= 0 {
		return "", false
	}
	return string(s), true
}

// strs splits a payload of nul-terminated strings; the last must be
// terminated.
func strs(payload []byte) ([]string, bool) {
	v, err := xenstore.SplitStrings(payload)
	return v, err == nil
}

// canon turns a request path into a canonical absolute path: relative
// paths are below the connection's domain path.
func canon(dom hyp.DomID, p string) (string, bool) {
	if p == "" {
		return "", false
	}
	if p[0] != '/' {
		if len(p) > xenstore.RelPathMax {
			return "", false
		}
		p = domainPath(dom) + "/" + p
	}
	return p, validPath(p)
}

// +checklocks:s.mu
func (s *Server) dispatch(c *conn, h xenstore.Header, payload []byte) ([]byte, unix.Errno) {
	switch h.Type {
	case xenstore.MsgRead, xenstore.MsgWrite, xenstore.MsgMkdir, xenstore.MsgRm,
		xenstore.MsgDirectory, xenstore.MsgDirectoryPart, xenstore.MsgGetPerms, xenstore.MsgSetPerms:
		v := &view{s: s, st: s.live}
		if h.TxID != 0 {
			t := s.txs[h.TxID]
			if t == nil || t.owner != c {
				return nil, unix.ENOENT
			}
			v = &view{s: s, st: t.st, tx: t}
		}
		out, errno := s.nodeOp(v, c.dom, h.Type, payload)
		if errno == 0 && len(v.fires) > 0 {
			if v.tx != nil {
				v.tx.fires = append(v.tx.fires, v.fires...)
			} else {
				s.fireAll(v.fires)
			}
		}
		return out, errno
	case xenstore.MsgWatch:
		return s.watch(c, payload)
	case xenstore.MsgUnwatch:
		return s.unwatch(c, payload)
	case xenstore.MsgResetWatches:
		c.watches = nil
		return []byte(ack), 0
	case xenstore.MsgTransactionStart:
		if h.TxID != 0 {
			return nil, unix.EBUSY
		}
		for {
			s.nextTx++
			if s.nextTx != 0 && s.txs[s.nextTx] == nil {
				break
			}
		}
		s.txs[s.nextTx] = newTx(s.nextTx, c, s.live)
		return append(strconv.AppendUint(nil, uint64(s.nextTx), 10), 0), 0
	case xenstore.MsgTransactionEnd:
		return s.txEnd(c, h.TxID, payload)
	case xenstore.MsgGetDomainPath:
		dom, okd := parseDom(payload)
		if !okd {
			return nil, unix.EINVAL
		}
		return append([]byte(domainPath(dom)), 0), 0
	case xenstore.MsgIsDomainIntroduced:
		dom, okd := parseDom(payload)
		if !okd {
			return nil, unix.EINVAL
		}
		if s.introduced[dom] {
			return []byte("T\x00"), 0
		}
		return []byte("F\x00"), 0
	case xenstore.MsgIntroduce, xenstore.MsgRelease:
		if c.dom != 0 {
			return nil, unix.EACCES
		}
		v, okv := strs(payload)
		if !okv || len(v) == 0 {
			return nil, unix.EINVAL
		}
		id, err := strconv.ParseUint(v[0], 10, 16)
		if err != nil {
			return nil, unix.EINVAL
		}
		if h.Type == xenstore.MsgIntroduce {
			s.introduceLocked(hyp.DomID(id))
		} else if errno := s.releaseLocked(hyp.DomID(id)); errno != 0 {
			return nil, errno
		}
		return []byte(ack), 0
	case xenstore.MsgControl, xenstore.MsgResume, xenstore.MsgSetTarget:
		return nil, unix.ENOSYS
	}
	return nil, unix.EINVAL
}

func parseDom(payload []byte) (hyp.DomID, bool) {
	a, okp := onearg(payload)
	if !okp {
		return 0, false
	}
	id, err := strconv.ParseUint(a, 10, 16)
	return hyp.DomID(id), err == nil
}

// nodeOp runs the operations that may be part of a transaction.
//
// +checklocks:s.mu
func (s *Server) nodeOp(v *view, dom hyp.DomID, typ xenstore.MsgType, payload []byte) ([]byte, unix.Errno) {
	// Every such request starts with a path.
	i := bytes.IndexByte(payload, 0)
	if i < 0 {
		return nil, unix.EINVAL
	}
	p, valid := canon(dom, string(payload[:i]))
	if !valid {
		return nil, unix.EINVAL
	}
	rest := payload[i+1:]
	switch typ {
	case xenstore.MsgRead:
		if len(rest) != 0 {
			return nil, unix.EINVAL
		}
		n, errno := v.lookup(dom, p, xenstore.AccessRead)
		if errno != 0 {
			return nil, errno
		}
		return slices.Clone(n.value), 0
	case xenstore.MsgWrite:
		// The value is the rest of the payload, nuls and all.
		if n, errno := v.lookup(dom, p, xenstore.AccessWrite); errno == 0 {
			nn := n.clone()
			nn.value = slices.Clone(rest)
			v.put(p, nn)
		} else if errno != unix.ENOENT {
			return nil, errno
		} else if errno := v.create(dom, p, rest); errno != 0 {
			return nil, errno
		}
		v.fires = append(v.fires, fire{path: p})
		return []byte(ack), 0
	case xenstore.MsgMkdir:
		if len(rest) != 0 {
			return nil, unix.EINVAL
		}
		if _, errno := v.lookup(dom, p, xenstore.AccessWrite); errno == 0 {
			return []byte(ack), 0
		} else if errno != unix.ENOENT {
			return nil, errno
		}
		if errno := v.create(dom, p, nil); errno != 0 {
			return nil, errno
		}
		v.fires = append(v.fires, fire{path: p})
		return []byte(ack), 0
	case xenstore.MsgRm:
		if len(rest) != 0 || p == "/" {
			return nil, unix.EINVAL
		}
		n, errno := v.lookup(dom, p, xenstore.AccessWrite)
		if errno == unix.ENOENT {
			// Removing a missing node is fine if its parent exists.
			if _, perr := v.lookup(dom, parent(p), xenstore.AccessRead); perr == 0 {
				return []byte(ack), 0
			}
			return nil, unix.ENOENT
		}
		if errno != 0 {
			return nil, errno
		}
		pp := parent(p)
		par := v.get(pp).clone()
		if j, found := slices.BinarySearch(par.children, base(p)); found {
			par.children = slices.Delete(par.children, j, j+1)
		}
		v.put(pp, par)
		v.remove(p)
		v.fires = append(v.fires, fire{path: p, oldPerms: n.perms})
		return []byte(ack), 0
	case xenstore.MsgDirectory:
		if len(rest) != 0 {
			return nil, unix.EINVAL
		}
		n, errno := v.lookup(dom, p, xenstore.AccessRead)
		if errno != 0 {
			return nil, errno
		}
		var out []byte
		for _, name := range n.children {
			out = append(append(out, name...), 0)
		}
		if len(out) > xenstore.PayloadMax {
			return nil, unix.E2BIG
		}
		return out, 0
	case xenstore.MsgDirectoryPart:
		off, okp := onearg(rest)
		if !okp {
			return nil, unix.EINVAL
		}
		o, err := strconv.ParseUint(off, 10, 31)
		if err != nil {
			return nil, unix.EINVAL
		}
		n, errno := v.lookup(dom, p, xenstore.AccessRead)
		if errno != 0 {
			return nil, errno
		}
		return directoryPart(n, int(o)), 0
	case xenstore.MsgGetPerms:
		if len(rest) != 0 {
			return nil, unix.EINVAL
		}
		n, errno := v.lookup(dom, p, xenstore.AccessRead)
		if errno != 0 {
			return nil, errno
		}
		return xenstore.AppendPerms(nil, n.perms), 0
	case xenstore.MsgSetPerms:
		ps, okp := strs(rest)
		if !okp || len(ps) == 0 {
			return nil, unix.EINVAL
		}
		perms := make([]xenstore.Perm, len(ps))
		for k, ss := range ps {
			var err error
			if perms[k], err = xenstore.ParsePerm(ss); err != nil {
				return nil, unix.EINVAL
			}
		}
		n, errno := v.lookup(dom, p, xenstore.AccessWrite)
		if errno != 0 {
			return nil, errno
		}
		if dom != 0 {
			// Only the owner may change permissions, and it may not
			// give the node away (do_set_perms).
			if n.perms[0].Dom != dom {
				return nil, unix.EACCES
			}
			if perms[0].Dom != dom {
				return nil, unix.EPERM
			}
		}
		nn := n.clone()
		nn.perms = perms
		v.put(p, nn)
		v.fires = append(v.fires, fire{path: p, oldPerms: n.perms})
		return []byte(ack), 0
	}
	return nil, unix.EINVAL
}

// directoryPart builds an XS_DIRECTORY_PART reply: the node's generation,
// then the whole child names from byte offset off that fit, then an empty
// string once the list is complete (send_directory_part).
func directoryPart(n *node, off int) []byte {
	var all []byte
	for _, name := range n.children {
		all = append(append(all, name...), 0)
	}
	out := append(strconv.AppendUint(nil, n.gen, 10), 0)
	if off >= len(all) {
		return append(out, 0)
	}
	maxLen := xenstore.PayloadMax - len(out) - 1
	l := 0
	for off+l < len(all) {
		k := bytes.IndexByte(all[off+l:], 0) + 1
		if l+k > maxLen {
			break
		}
		l += k
	}
	out = append(out, all[off:off+l]...)
	if off+l == len(all) {
		out = append(out, 0)
	}
	return out
}

// +checklocks:s.mu
func (s *Server) watch(c *conn, payload []byte) ([]byte, unix.Errno) {
	v, okv := strs(payload)
	if !okv || len(v) < 2 {
		return nil, unix.EINVAL
	}
	w, okw := watchPath(c.dom, v[0])
	if !okw {
		return nil, unix.EINVAL
	}
	w.token = v[1]
	for _, o := range c.watches {
		if o.path == w.path && o.token == w.token {
			return nil, unix.EEXIST
		}
	}
	c.watches = append(c.watches, w)
	return []byte(ack), 0
}

// +checklocks:s.mu
func (s *Server) unwatch(c *conn, payload []byte) ([]byte, unix.Errno) {
	v, okv := strs(payload)
	if !okv || len(v) < 2 {
		return nil, unix.EINVAL
	}
	w, okw := watchPath(c.dom, v[0])
	if !okw {
		return nil, unix.EINVAL
	}
	for i, o := range c.watches {
		if o.path == w.path && o.token == v[1] {
			c.watches = slices.Delete(c.watches, i, i+1)
			return []byte(ack), 0
		}
	}
	return nil, unix.ENOENT
}

func watchPath(dom hyp.DomID, p string) (*watch, bool) {
	if strings.HasPrefix(p, "@") {
		if len(p) > xenstore.RelPathMax {
			return nil, false
		}
		return &watch{path: p}, true
	}
	cp, valid := canon(dom, p)
	if !valid {
		return nil, false
	}
	w := &watch{path: cp}
	if p[0] != '/' {
		w.relative = domainPath(dom)
	}
	return w, true
}

// eventPath is the path an event for name carries to w: relative to the
// domain path when w was registered relative (get_watch_path).
func eventPath(w *watch, name string) string {
	if w.relative == "" {
		return name
	}
	r := strings.TrimPrefix(name, w.relative)
	return strings.TrimPrefix(r, "/")
}

// fireAll sends the watch events of committed changes.
//
// +checklocks:s.mu
func (s *Server) fireAll(fires []fire) {
	for _, f := range fires {
		for c := range s.conns {
			if !s.watchPermitted(c.dom, f) {
				continue
			}
			for _, w := range c.watches {
				if f.exact && w.path != f.path || !f.exact && !isChild(f.path, w.path) {
					continue
				}
				c.queue(xenstore.Header{Type: xenstore.MsgWatchEvent},
					xenstore.AppendEvent(nil, xenstore.Event{Path: eventPath(w, f.path), Token: w.token}))
			}
		}
	}
}

// watchPermitted reports whether dom may see an event for f: it can read
// the node (or read it before the change), or, for a removed node, its
// parent (watch_permitted in xenstored_watch.c).
//
// +checklocks:s.mu
func (s *Server) watchPermitted(dom hyp.DomID, f fire) bool {
	if dom == 0 || strings.HasPrefix(f.path, "@") {
		return true
	}
	if f.oldPerms != nil && access(dom, f.oldPerms)&xenstore.AccessRead != 0 {
		return true
	}
	if n := s.live[f.path]; n != nil {
		return access(dom, n.perms)&xenstore.AccessRead != 0
	}
	if n := s.live[parent(f.path)]; n != nil {
		return access(dom, n.perms)&xenstore.AccessRead != 0
	}
	return false
}

// +checklocks:s.mu
func (s *Server) txEnd(c *conn, id uint32, payload []byte) ([]byte, unix.Errno) {
	t := s.txs[id]
	if id == 0 || t == nil || t.owner != c {
		return nil, unix.ENOENT
	}
	a, okp := onearg(payload)
	if !okp || (a != "T" && a != "F") {
		return nil, unix.EINVAL
	}
	delete(s.txs, id)
	if a == "F" {
		return []byte(ack), 0
	}
	if t.conflicts(s.live) {
		return nil, unix.EAGAIN
	}
	paths := make([]string, 0, len(t.changed))
	for p := range t.changed {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		if n := t.st[p]; n != nil {
			nn := n.clone()
			s.gen++
			nn.gen = s.gen
			s.live[p] = nn
		} else {
			delete(s.live, p)
		}
	}
	s.fireAll(t.fires)
	return []byte(ack), 0
}

// +checklocks:s.mu
func (s *Server) introduceLocked(dom hyp.DomID) {
	s.introduced[dom] = true
	s.fireAll([]fire{{path: "@introduceDomain", exact: true}})
}

// +checklocks:s.mu
func (s *Server) releaseLocked(dom hyp.DomID) unix.Errno {
	if dom == 0 {
		return unix.EINVAL
	}
	if !s.introduced[dom] {
		return unix.ENOENT
	}
	delete(s.introduced, dom)
	s.fireAll([]fire{{path: "@releaseDomain", exact: true}})
	return 0
}
