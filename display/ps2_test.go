package display

import "testing"

type keyRec struct{ keys []Key }

func (k *keyRec) KeyEvent(key Key, down bool)                { k.keys = append(k.keys, key) }
func (k *keyRec) PointerEvent(x, y, w, h int, buttons uint8) { k.keys = append(k.keys, 0) }

type ptrRec struct{ xs []int }

func (p *ptrRec) PointerEvent(x, y, w, h int, buttons uint8) { p.xs = append(p.xs, x) }

// TestSplitInput: keys reach Keys only, pointer events Pointer only; nil
// members drop theirs.
func TestSplitInput(t *testing.T) {
	k, p := &keyRec{}, &ptrRec{}
	s := SplitInput{Keys: k, Pointer: p}
	s.KeyEvent(0x1e, true)
	s.PointerEvent(7, 1, 10, 10, 1)
	if len(k.keys) != 1 || k.keys[0] != 0x1e || len(p.xs) != 1 || p.xs[0] != 7 {
		t.Fatalf("keys %v pointer %v", k.keys, p.xs)
	}
	SplitInput{}.KeyEvent(0x1e, true)
	SplitInput{}.PointerEvent(1, 1, 2, 2, 0)
}
