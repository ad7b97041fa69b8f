package xensim

import (
	"sort"

	"golang.org/x/sys/unix"
)

// maxIORanges is MAX_NR_IO_RANGES (xen/include/xen/ioreq.h): the limit
// of each rangeset of an ioreq server.
const maxIORanges = 256

// rangeSet is Xen's rangeset: sorted, disjoint, inclusive ranges; adding
// merges with overlapping or adjacent ranges (xen/common/rangeset.c).
type rangeSet struct {
	r []ioRange
}

type ioRange struct{ s, e uint64 }

// find returns the index of the first range with e >= x.
func (rs *rangeSet) find(x uint64) int {
	return sort.Search(len(rs.r), func(i int) bool { return rs.r[i].e >= x })
}

func (rs *rangeSet) overlaps(s, e uint64) bool {
	i := rs.find(s)
	return i < len(rs.r) && rs.r[i].s <= e
}

func (rs *rangeSet) contains(s, e uint64) bool {
	i := rs.find(s)
	return i < len(rs.r) && rs.r[i].s <= s && rs.r[i].e >= e
}

// add inserts [s,e], merging neighbours. ENOSPC past the limit, like
// rangeset_add_range on a limited rangeset.
func (rs *rangeSet) add(s, e uint64) error {
	lo := s
	if lo > 0 {
		lo--
	}
	i := rs.find(lo) // first range that overlaps or touches from the left
	j := i
	ns, ne := s, e
	for j < len(rs.r) && (e == ^uint64(0) || rs.r[j].s <= e+1) {
		if rs.r[j].s < ns {
			ns = rs.r[j].s
		}
		if rs.r[j].e > ne {
			ne = rs.r[j].e
		}
		j++
	}
	if j == i && len(rs.r) >= maxIORanges {
		return unix.ENOSPC
	}
	out := append(rs.r[:i:i], ioRange{ns, ne})
	rs.r = append(out, rs.r[j:]...)
	return nil
}

// remove deletes [s,e] from the set, splitting ranges as needed.
func (rs *rangeSet) remove(s, e uint64) error {
	var out []ioRange
	for _, r := range rs.r {
		if r.e < s || r.s > e {
			out = append(out, r)
			continue
		}
		if r.s < s {
			out = append(out, ioRange{r.s, s - 1})
		}
		if r.e > e {
			out = append(out, ioRange{e + 1, r.e})
		}
	}
	if len(out) > maxIORanges {
		return unix.ENOSPC
	}
	rs.r = out
	return nil
}
