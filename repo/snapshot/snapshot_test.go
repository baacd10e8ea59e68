package snapshot

import (
	"errors"
	"strings"
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

func TestExcludesRoundTripAndOldSnapshotsDecode(t *testing.T) {
	s := &Snapshot{Time: time.Unix(1, 0).UTC(), Tree: id.Random(), Excludes: []string{"*.tmp", "cache/**"}}
	buf, err := s.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Excludes) != 2 || got.Excludes[0] != "*.tmp" || got.Excludes[1] != "cache/**" {
		t.Fatalf("excludes %v", got.Excludes)
	}
	// A snapshot written before excludes existed has no such field, and means nothing was excluded.
	old, err := Decode([]byte(`{"time":"2026-01-01T00:00:00Z","host":"h","paths":["/d"],"tree":"` + id.Random().String() + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	if old.Excludes != nil {
		t.Fatalf("old snapshot excludes %v", old.Excludes)
	}
	// No excludes, no field: the IDs of snapshots without excludes do not change.
	plain, _ := (&Snapshot{Tree: id.Random()}).Encode()
	if strings.Contains(string(plain), "excludes") {
		t.Fatalf("encoded %s", plain)
	}
}
