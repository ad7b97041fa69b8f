package xenstored

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"godm/hyp"
	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

// node is one xenstore node. Nodes held by a store are never modified in
// place (stores and transaction snapshots share them); changes replace the
// node with a modified copy.
type node struct {
	value    []byte
	perms    []xenstore.Perm // [0] owner + default access, then ACL
	children []string        // names, sorted
	gen      uint64          // store generation of the last change
}

func (n *node) clone() *node {
	c := *n
	c.value = slices.Clone(n.value)
	c.perms = slices.Clone(n.perms)
	c.children = slices.Clone(n.children)
	return &c
}

// store maps canonical absolute paths to nodes.
type store map[string]*node

// access returns the rights dom has on a node with perms
// (perm_for_conn in xenstored_core.c): dom0 and the owner have both; else
// the domain's ACL entry, else the default in perms[0].
func access(dom hyp.DomID, perms []xenstore.Perm) xenstore.Access {
	if dom == 0 || len(perms) == 0 || perms[0].Dom == dom {
		return xenstore.AccessBoth
	}
	for _, p := range perms[1:] {
		if p.Dom == dom {
			return p.Access
		}
	}
	return perms[0].Access
}

// parent returns the parent path of a canonical path other than "/".
func parent(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

func base(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// isChild reports whether p is w or below it (is_child in
// xenstored_watch.c; "/" contains everything).
func isChild(p, w string) bool {
	if w == "/" {
		return true
	}
	return p == w || (strings.HasPrefix(p, w) && p[len(w)] == '/')
}

func domainPath(dom hyp.DomID) string {
	return "/local/domain/" + strconv.Itoa(int(dom))
}

// validPath checks a canonical absolute path: the characters xenstored
// allows (alphanumerics and "-/_@"), no empty component, no trailing
// slash, and XENSTORE_ABS_PATH_MAX.
func validPath(p string) bool {
	if p == "" || p[0] != '/' || len(p) > xenstore.AbsPathMax {
		return false
	}
	if p == "/" {
		return true
	}
	if p[len(p)-1] == '/' || strings.Contains(p, "//") {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '/', c == '_', c == '@':
		default:
			return false
		}
	}
	return true
}

// fire is a change that triggers watches.
type fire struct {
	path     string
	exact    bool            // only watches on exactly path (a removed child)
	oldPerms []xenstore.Perm // perms before the change, also allowing the event
}

// view is the store an operation works on: the live store, or a
// transaction's snapshot (which records what it touches).
type view struct {
	s     *Server
	st    store
	tx    *tx // nil for the live store
	fires []fire
}

func (v *view) get(p string) *node {
	if v.tx != nil {
		v.tx.note(p)
	}
	return v.st[p]
}

func (v *view) put(p string, n *node) {
	if v.tx != nil {
		v.tx.note(p)
		v.tx.changed[p] = true
	} else {
		v.s.gen++
		n.gen = v.s.gen
	}
	v.st[p] = n
}

func (v *view) del(p string) {
	if v.tx != nil {
		v.tx.note(p)
		v.tx.changed[p] = true
	}
	delete(v.st, p)
}

// tx is an open transaction.
type tx struct {
	id      uint32
	owner   *conn
	st      store             // snapshot plus own changes
	seen    map[string]uint64 // path -> generation in the snapshot (0: absent)
	changed map[string]bool
	fires   []fire
}

func newTx(id uint32, owner *conn, live store) *tx {
	return &tx{
		id:      id,
		owner:   owner,
		st:      maps.Clone(live),
		seen:    make(map[string]uint64),
		changed: make(map[string]bool),
	}
}

// note records the generation of p as the snapshot has it, the first time
// the transaction touches p (before it changes p).
func (t *tx) note(p string) {
	if _, ok := t.seen[p]; ok {
		return
	}
	var g uint64
	if n := t.st[p]; n != nil {
		g = n.gen
	}
	t.seen[p] = g
}

// conflicts reports whether another change reached a node the
// transaction touched since its snapshot.
func (t *tx) conflicts(live store) bool {
	for p, g := range t.seen {
		var cur uint64
		if n := live[p]; n != nil {
			cur = n.gen
		}
		if cur != g {
			return true
		}
	}
	return false
}

// lookup finds the node at p that dom may access with want. A missing
// node gives ENOENT, or EACCES when dom may not read the nearest existing
// ancestor (so absence does not leak).
func (v *view) lookup(dom hyp.DomID, p string, want xenstore.Access) (*node, unix.Errno) {
	n := v.get(p)
	if n == nil {
		for a := p; a != "/"; {
			a = parent(a)
			if an := v.get(a); an != nil {
				if access(dom, an.perms)&xenstore.AccessRead == 0 {
					return nil, unix.EACCES
				}
				break
			}
		}
		return nil, unix.ENOENT
	}
	if access(dom, n.perms)&want != want {
		return nil, unix.EACCES
	}
	return n, 0
}

// create makes p and its missing ancestors. New nodes inherit their
// parent's permissions; an unprivileged creator becomes the owner
// (construct_node in xenstored_core.c). The nearest existing ancestor must
// be writable by dom.
func (v *view) create(dom hyp.DomID, p string, value []byte) unix.Errno {
	var missing []string
	a := p
	for v.get(a) == nil {
		missing = append(missing, a)
		a = parent(a)
	}
	anc := v.get(a)
	if access(dom, anc.perms)&xenstore.AccessWrite == 0 {
		return unix.EACCES
	}
	perms := slices.Clone(anc.perms)
	if dom != 0 {
		perms[0].Dom = dom
	}
	for i := len(missing) - 1; i >= 0; i-- {
		m := missing[i]
		pp := parent(m)
		par := v.get(pp).clone()
		par.children = insertSorted(par.children, base(m))
		v.put(pp, par)
		n := &node{perms: slices.Clone(perms)}
		if i == 0 {
			n.value = slices.Clone(value)
		}
		v.put(m, n)
	}
	return 0
}

func insertSorted(s []string, name string) []string {
	i, found := slices.BinarySearch(s, name)
	if found {
		return s
	}
	return slices.Insert(s, i, name)
}

// remove deletes p and its subtree, recording exact fires for each removed
// descendant, deepest first.
func (v *view) remove(p string) {
	n := v.get(p)
	if n == nil {
		return
	}
	for _, c := range n.children {
		cp := join(p, c)
		if cn := v.get(cp); cn != nil {
			v.remove(cp)
			v.fires = append(v.fires, fire{path: cp, exact: true, oldPerms: cn.perms})
		}
	}
	v.del(p)
}
