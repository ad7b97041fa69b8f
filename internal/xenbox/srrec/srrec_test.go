package srrec

import (
	"strings"
	"testing"
)

func TestRecord(t *testing.T) {
	seen := map[string]uint32{}
	for s := uint32(1); s <= 300; s++ {
		r := Record(s)
		if !Valid(r, s) || Valid(r, s+1) {
			t.Fatalf("record %d: Valid for itself %v, for %d %v", s, Valid(r, s), s+1, Valid(r, s+1))
		}
		d := Digest(s)
		if o, dup := seen[d]; dup {
			t.Fatalf("records %d and %d have the digest %s", o, s, d)
		}
		seen[d] = s
		r[100] ^= 1
		if Valid(r, s) {
			t.Fatalf("record %d with a flipped bit is valid", s)
		}
	}
	if AreaSum(3) == AreaSum(4) || AreaSum(0) != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Error("AreaSum does not depend on n, or is not SHA-256 of nothing for 0")
	}
}

func stream(tag string, lines ...string) Stream {
	var s Stream
	for _, l := range lines {
		s.Add(l, tag)
	}
	return s
}

func TestCheckExact(t *testing.T) {
	ok := stream(SerialTag, "boot noise", SerialLine(1), SerialLine(2), "SR-VERIFY 2", SerialLine(3))
	if err := ok.CheckExact(3); err != nil {
		t.Errorf("1,2,3: %v", err)
	}
	if err := ok.CheckExact(4); err == nil {
		t.Error("3 records accepted as 4")
	}
	for name, s := range map[string]Stream{
		"gap":     stream(SerialTag, SerialLine(1), SerialLine(3)),
		"doubled": stream(SerialTag, SerialLine(1), SerialLine(1), SerialLine(2)),
		"corrupt": stream(SerialTag, SerialLine(1), strings.Replace(SerialLine(2), "SR-SER 2", "SR-SER 3", 1)),
		"cut":     stream(SerialTag, SerialLine(1), SerialLine(2)[:20]),
	} {
		if err := s.CheckExact(2); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCheckResent(t *testing.T) {
	s := stream(NetTag, NetLine(1), NetLine(2), NetLine(2), NetLine(3))
	if dups, err := s.CheckResent(3); err != nil || dups != 1 {
		t.Errorf("1,2,2,3: %d resent, %v", dups, err)
	}
	for name, s := range map[string]Stream{
		"gap":   stream(NetTag, NetLine(1), NetLine(3)),
		"back":  stream(NetTag, NetLine(1), NetLine(2), NetLine(1)),
		"short": stream(NetTag, NetLine(1), NetLine(2)),
		"bad":   stream(NetTag, NetLine(1), "NET 2 00000000 00", NetLine(3)),
	} {
		if _, err := s.CheckResent(3); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
