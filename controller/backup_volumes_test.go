package controller

import (
	"testing"
	"time"

	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
)

func TestParentFor(t *testing.T) {
	snap := func(tags map[string]string) *snapshot.Snapshot {
		return &snapshot.Snapshot{ID: id.Random(), Tags: tags}
	}
	// Oldest first, as the repository lists them.
	claimOld := snap(map[string]string{bsl.TagPVC: "data", bsl.TagPod: "a", bsl.TagVolume: "v"})
	claimNew := snap(map[string]string{bsl.TagPVC: "data", bsl.TagPod: "b", bsl.TagVolume: "w"})
	otherClaim := snap(map[string]string{bsl.TagPVC: "other", bsl.TagPod: "p", bsl.TagVolume: "v"})
	emptyDir := snap(map[string]string{bsl.TagPod: "p", bsl.TagVolume: "v"})
	otherVolume := snap(map[string]string{bsl.TagPod: "p", bsl.TagVolume: "x"})
	snaps := []*snapshot.Snapshot{claimOld, emptyDir, claimNew, otherClaim, otherVolume}
	for _, tc := range []struct {
		name string
		pv   PlannedVolume
		want string
	}{
		{"newest of the claim, whatever pod took it", PlannedVolume{Pod: "p", Volume: "v", PVC: "data"}, claimNew.ID.String()},
		{"same pod and volume without a claim", PlannedVolume{Pod: "p", Volume: "v"}, emptyDir.ID.String()},
		{"a claim's snapshot is no parent of an emptyDir", PlannedVolume{Pod: "b", Volume: "w"}, ""},
		{"nothing of a new claim", PlannedVolume{Pod: "p", Volume: "v", PVC: "new"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parentFor(snaps, tc.pv); got != tc.want {
				t.Errorf("parent %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCreatedNotCachedCountsUntilTheCacheShowsThem(t *testing.T) {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	var c createdNotCached
	c.add("a", start)
	c.add("b", start)
	c.add("c", start.Add(30*time.Second))
	if got := c.unseen(map[string]bool{}, start.Add(time.Second)); got != 3 {
		t.Errorf("none cached: %d unseen, want 3", got)
	}
	if got := c.unseen(map[string]bool{"a": true}, start.Add(time.Second)); got != 2 {
		t.Errorf("a cached: %d unseen, want 2", got)
	}
	// a was forgotten once seen: a later cache without it (deleted since) does not count it again.
	if got := c.unseen(map[string]bool{}, start.Add(time.Second)); got != 2 {
		t.Errorf("a deleted after it was seen: %d unseen, want 2", got)
	}
	// b was never seen (deleted before the cache caught up): it stops holding room after notCachedFor.
	if got := c.unseen(map[string]bool{}, start.Add(notCachedFor+time.Second)); got != 1 {
		t.Errorf("after %s: %d unseen, want 1 (c)", notCachedFor, got)
	}
}
