package xenstored_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"godm/hyp/xenstore"
	"golang.org/x/sys/unix"
)

// TestModelNoTransactions runs random writes, mkdirs and removals on a
// few paths and compares every node's value and children with a plain
// map model after each step.
func TestModelNoTransactions(t *testing.T) {
	s := newServer(t)
	c := client(t, s, 0)
	ctx := testCtx(t)
	model := map[string]string{"/m": ""}
	if err := c.Mkdir(ctx, "/m"); err != nil {
		t.Fatal(err)
	}
	names := []string{"a", "b", "c"}
	randPath := func(r *rand.Rand) string {
		p := "/m"
		for d := r.IntN(3) + 1; d > 0; d-- {
			p += "/" + names[r.IntN(len(names))]
		}
		return p
	}
	r := rand.New(rand.NewPCG(1, 2))
	for step := 0; step < 600; step++ {
		p := randPath(r)
		switch r.IntN(3) {
		case 0:
			v := fmt.Sprint(step)
			if err := c.Write(ctx, p, []byte(v)); err != nil {
				t.Fatal(err)
			}
			for a := p; a != "/m"; a = a[:strings.LastIndexByte(a, '/')] {
				if _, ok := model[a]; !ok {
					model[a] = ""
				}
			}
			model[p] = v
		case 1:
			if err := c.Mkdir(ctx, p); err != nil {
				t.Fatal(err)
			}
			for a := p; a != "/m"; a = a[:strings.LastIndexByte(a, '/')] {
				if _, ok := model[a]; !ok {
					model[a] = ""
				}
			}
		case 2:
			err := c.Rm(ctx, p)
			parent := p[:strings.LastIndexByte(p, '/')]
			if _, ok := model[parent]; !ok {
				if !errors.Is(err, unix.ENOENT) {
					t.Fatalf("step %d: rm %s under missing parent: %v", step, p, err)
				}
				break
			}
			if err != nil {
				t.Fatalf("step %d: rm %s: %v", step, p, err)
			}
			for k := range model {
				if k == p || strings.HasPrefix(k, p+"/") {
					delete(model, k)
				}
			}
		}
		// Compare the whole subtree.
		for _, a := range []string{"/m", "/m/a", "/m/b", "/m/c", "/m/a/b", "/m/c/c/a", p} {
			want, exists := model[a]
			got, err := c.Read(ctx, a)
			if !exists {
				if !errors.Is(err, unix.ENOENT) {
					t.Fatalf("step %d: read %s = %q, %v; want ENOENT", step, a, got, err)
				}
				continue
			}
			if err != nil || string(got) != want {
				t.Fatalf("step %d: read %s = %q, %v; want %q", step, a, got, err, want)
			}
			var kids []string
			for k := range model {
				if strings.HasPrefix(k, a+"/") && !strings.Contains(k[len(a)+1:], "/") {
					kids = append(kids, k[len(a)+1:])
				}
			}
			sort.Strings(kids)
			dir, err := c.Directory(ctx, a)
			if err != nil || !slices.Equal(dir, kids) {
				t.Fatalf("step %d: directory %s = %q, %v; want %q", step, a, dir, err, kids)
			}
		}
	}
}

// TestModelTransactions interleaves three transactions and plain writes
// over pre-created keys, one request at a time, and checks the conflict
// rule exactly: a commit fails with EAGAIN if and only if a key the
// transaction read or wrote was changed by someone else since it
// started, and a successful commit is serializable (its reads still hold
// at commit time).
func TestModelTransactions(t *testing.T) {
	s := newServer(t)
	ctx := testCtx(t)
	keys := []string{"/k/0", "/k/1", "/k/2", "/k/3"}
	version := map[string]int{}
	value := map[string]string{}
	plain := client(t, s, 0)
	for _, k := range keys {
		if err := plain.Write(ctx, k, []byte("init")); err != nil {
			t.Fatal(err)
		}
		value[k] = "init"
	}
	type txState struct {
		tx      *xenstore.Tx
		start   map[string]int    // versions at start
		snap    map[string]string // values at start
		touched map[string]bool   // keys read or written
		reads   map[string]string // first value read per key
		writes  map[string]string
	}
	clients := []*xenstore.Client{client(t, s, 0), client(t, s, 0), client(t, s, 0)}
	txs := make([]*txState, len(clients))
	r := rand.New(rand.NewPCG(3, 4))
	commits, conflicts := 0, 0
	for step := 0; step < 1500; step++ {
		i := r.IntN(len(clients) + 1)
		k := keys[r.IntN(len(keys))]
		if i == len(clients) { // a plain write from outside
			v := fmt.Sprint("p", step)
			if err := plain.Write(ctx, k, []byte(v)); err != nil {
				t.Fatal(err)
			}
			value[k] = v
			version[k]++
			continue
		}
		st := txs[i]
		if st == nil {
			tx, err := clients[i].Start(ctx)
			if err != nil {
				t.Fatal(err)
			}
			txs[i] = &txState{tx: tx, start: cloneMap(version), snap: cloneMap(value), touched: map[string]bool{},
				reads: map[string]string{}, writes: map[string]string{}}
			continue
		}
		switch r.IntN(4) {
		case 0: // read
			got, err := st.tx.Read(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			// Its own write, else the value when it started.
			want, ok := st.writes[k]
			if !ok {
				want = st.snap[k]
				st.reads[k] = want
			}
			if string(got) != want {
				t.Fatalf("step %d: tx read %s = %q, want %q", step, k, got, want)
			}
			st.touched[k] = true
		case 1: // write
			v := fmt.Sprint("t", i, "-", step)
			if err := st.tx.Write(ctx, k, []byte(v)); err != nil {
				t.Fatal(err)
			}
			st.writes[k] = v
			st.touched[k] = true
		case 2, 3: // end
			commit := r.IntN(4) != 0
			err := st.tx.End(ctx, commit)
			txs[i] = nil
			if !commit {
				if err != nil {
					t.Fatal(err)
				}
				continue
			}
			changed := false
			for key := range st.touched {
				if version[key] != st.start[key] {
					changed = true
				}
			}
			switch {
			case changed && !errors.Is(err, unix.EAGAIN):
				t.Fatalf("step %d: commit over changed keys: %v, want EAGAIN", step, err)
			case !changed && err != nil:
				t.Fatalf("step %d: commit without conflict: %v", step, err)
			case changed:
				conflicts++
			default:
				commits++
				for key, v := range st.reads {
					if _, wrote := st.writes[key]; !wrote && value[key] != v {
						t.Fatalf("step %d: committed tx read %s = %q, live is %q", step, key, v, value[key])
					}
				}
				for key, v := range st.writes {
					value[key] = v
					version[key]++
				}
			}
		}
		for _, key := range keys {
			got, err := s.Read(key)
			if err != nil || string(got) != value[key] {
				t.Fatalf("step %d: live %s = %q, %v; want %q", step, key, got, err, value[key])
			}
		}
	}
	t.Logf("%d commits, %d conflicts", commits, conflicts)
	if commits == 0 || conflicts == 0 {
		t.Errorf("commits %d, conflicts %d: the random schedule should produce both", commits, conflicts)
	}
}

func cloneMap[V any](m map[string]V) map[string]V {
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
