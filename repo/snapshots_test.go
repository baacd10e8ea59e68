package repo_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

// forgetAfterList deletes one object right after a listing of snapshots/, the way a forget running in another
// process may between a reader's listing and its loading.
type forgetAfterList struct {
	*mem.Backend
	victim string
}

func (b *forgetAfterList) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	if err := b.Backend.List(ctx, prefix, fn); err != nil {
		return err
	}
	if strings.HasPrefix(prefix, "snapshots/") && b.victim != "" {
		return b.Backend.Delete(ctx, b.victim)
	}
	return nil
}

// A snapshot forgotten between the listing and the loading is left out; the others are still listed. It
// used to fail the whole listing with "object not found", failing prunes beside concurrent forgets.
func TestListSnapshotsSkipsSnapshotsForgottenMeanwhile(t *testing.T) {
	ctx := context.Background()
	be := &forgetAfterList{Backend: mem.New()}
	r := repotest.Init(t, be)
	var ids []id.ID
	for i := range 3 {
		s := &snapshot.Snapshot{Time: time.Date(2026, 1, 1, i, 0, 0, 0, time.UTC), Host: "h", Paths: []string{"/p"}, Tree: id.Random()}
		sid, err := r.SaveSnapshot(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sid)
	}
	be.victim = snapshot.Name(ids[1])
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		t.Fatalf("ListSnapshots beside a forget: %v", err)
	}
	if len(snaps) != 2 || snaps[0].ID != ids[0] || snaps[1].ID != ids[2] {
		t.Fatalf("ListSnapshots = %v; want %s and %s", snaps, ids[0].Short(), ids[2].Short())
	}
	if _, err := r.FindSnapshot(ctx, "latest", repo.Filter{Host: "h"}); err != nil {
		t.Errorf("FindSnapshot latest: %v", err)
	}
}
