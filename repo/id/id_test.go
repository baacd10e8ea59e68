package id

import "testing"

func TestParseRoundTrip(t *testing.T) {
	r := Random()
	p, err := Parse(r.String())
	if err != nil || p != r {
		t.Fatalf("Parse(String()) = %v, %v; want %v", p, err, r)
	}
	if _, err := Parse("abc"); err == nil {
		t.Fatal("short ID accepted")
	}
	if _, err := Parse(string(make([]byte, 64))); err == nil {
		t.Fatal("non-hex ID accepted")
	}
	if Compare(r, r) != 0 || r.Less(r) {
		t.Fatal("an ID is not equal to itself")
	}
}
