package controller

import (
	"testing"

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
