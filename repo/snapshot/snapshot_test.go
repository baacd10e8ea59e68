package snapshot

import (
	"errors"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/id"
)

func TestRoundTrip(t *testing.T) {
	parent := id.Random()
	s := &Snapshot{Time: time.Unix(100, 5).UTC(), Host: "node-1", Paths: []string{"/data"}, Tree: id.Random(), Parent: &parent,
		Tags: map[string]string{"pod": "db-0"}, Summary: &Summary{FilesNew: 3}}
	buf, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != id.Hash(buf) || got.Tree != s.Tree || *got.Parent != parent || got.Tags["pod"] != "db-0" || !got.Time.Equal(s.Time) {
		t.Fatalf("round trip: %+v", got)
	}
	if _, err := Decode([]byte(`{"host":"x"}`)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("snapshot without tree: %v", err)
	}
	if _, err := Decode([]byte(`{`)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("bad JSON: %v", err)
	}
}

func FuzzDecode(f *testing.F) {
	s := &Snapshot{Time: time.Unix(0, 0), Tree: id.Random()}
	buf, _ := s.Encode()
	f.Add(buf)
	f.Fuzz(func(t *testing.T, data []byte) { _, _ = Decode(data) })
}
