package forget_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/forget"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

var ctx = context.Background()

// saveSnapshots stores one snapshot per hour from start, alternating two hosts, and returns them in order.
// Forget never reads trees, so the tree IDs need not exist.
func saveSnapshots(t *testing.T, r *repo.Repository, n int) []*snapshot.Snapshot {
	t.Helper()
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var snaps []*snapshot.Snapshot
	for i := range n {
		s := &snapshot.Snapshot{Time: start.Add(time.Duration(i) * time.Hour), Host: []string{"node-a", "node-b"}[i%2],
			Paths: []string{"/data"}, Tree: id.Random()}
		if _, err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, s)
	}
	return snaps
}

func storedSnapshots(t *testing.T, be *mem.Backend) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	_ = be.List(ctx, "snapshots/", func(fi storage.Info) error {
		names[strings.TrimPrefix(fi.Name, "snapshots/")] = true
		return nil
	})
	return names
}

func countObjects(t *testing.T, be *mem.Backend) int {
	t.Helper()
	n := 0
	_ = be.List(ctx, "", func(storage.Info) error { n++; return nil })
	return n
}

func TestForgetByIDAndPrefix(t *testing.T) {
	r, be := repotest.New(t)
	snaps := saveSnapshots(t, r, 4)
	objects := countObjects(t, be)

	// A full ID, a prefix of the same snapshot (named twice, removed once) and a prefix of another.
	refs := []string{snaps[0].ID.String(), snaps[0].ID.String()[:6], snaps[2].ID.Short()}
	got, err := forget.Resolve(ctx, r, refs, repo.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != snaps[0].ID || got[1].ID != snaps[2].ID {
		t.Fatalf("resolved %d snapshots: %v", len(got), got)
	}
	latest, err := forget.Resolve(ctx, r, []string{"latest"}, repo.Filter{Host: "node-a"})
	if err != nil || len(latest) != 1 || latest[0].ID != snaps[2].ID {
		t.Fatalf("latest of node-a: %v, %v", latest, err)
	}
	if err := forget.Remove(ctx, r, got); err != nil {
		t.Fatal(err)
	}
	left := storedSnapshots(t, be)
	if len(left) != 2 || !left[snaps[1].ID.String()] || !left[snaps[3].ID.String()] {
		t.Fatalf("left after forget: %v", left)
	}
	// Only the two snapshot objects went: keys, config, index and packs stay for prune to judge.
	if n := countObjects(t, be); n != objects-2 {
		t.Fatalf("%d objects after removing 2 of %d", n, objects)
	}
}

func TestForgetResolveErrorsDeleteNothing(t *testing.T) {
	r, be := repotest.New(t)
	snaps := saveSnapshots(t, r, 2)
	// Two snapshot objects whose names share the prefix abcd.
	buf, _ := storage.ReadAll(ctx, be, snapshot.Name(snaps[0].ID))
	for _, suffix := range []string{"1", "2"} {
		_ = storage.PutBytes(ctx, be, "snapshots/abcd"+strings.Repeat("0", 59)+suffix, buf)
	}
	before := storedSnapshots(t, be)
	for _, tc := range []struct {
		refs []string
		f    repo.Filter
		is   error
		want string
	}{
		{refs: []string{snaps[0].ID.Short(), "abcd"}, is: repo.ErrAmbiguous},
		{refs: []string{snaps[0].ID.Short(), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, is: repo.ErrNotFound},
		{refs: []string{snaps[1].ID.Short(), "fff"}, want: "at least 4 hex digits"},
		{refs: []string{snaps[1].ID.Short()}, f: repo.Filter{Host: "node-a"}, want: "does not match"},
	} {
		_, err := forget.Resolve(ctx, r, tc.refs, tc.f)
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Resolve(%v): %v", tc.refs, err)
		}
	}
	if after := storedSnapshots(t, be); len(after) != len(before) {
		t.Fatalf("a failed resolve deleted something: %d snapshots, had %d", len(after), len(before))
	}
}

func TestForgetByPolicy(t *testing.T) {
	r, be := repotest.New(t)
	snaps := saveSnapshots(t, r, 6) // node-a: 0, 2, 4; node-b: 1, 3, 5
	listed, err := repotest.Reopen(t, be).ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	groups, err := forget.Apply(listed, forget.Options{Policy: forget.Policy{Last: 2}, GroupBy: forget.DefaultGroupBy})
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].Key.Host != "node-a" || len(groups[0].Remove) != 1 || groups[0].Remove[0].ID != snaps[0].ID ||
		groups[1].Key.Host != "node-b" || len(groups[1].Remove) != 1 || groups[1].Remove[0].ID != snaps[1].ID {
		t.Fatalf("plan: %+v", groups)
	}
	for _, g := range groups {
		if err := forget.Remove(ctx, r, g.Remove); err != nil {
			t.Fatal(err)
		}
	}
	left, err := r.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 4 || left[0].ID != snaps[2].ID {
		t.Fatalf("%d snapshots left, oldest %s", len(left), left[0].ID.Short())
	}
}
