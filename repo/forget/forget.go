package forget

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
)

// Resolve finds the snapshots refs name: full IDs, unique prefixes, or "latest", as repo.FindSnapshot reads
// them. Every ref must resolve to a snapshot that passes the filter, or Resolve fails, so a mistyped ID stops
// the whole command before anything is deleted. A snapshot named twice is returned once.
func Resolve(ctx context.Context, r *repo.Repository, refs []string, f repo.Filter) ([]*snapshot.Snapshot, error) {
	var snaps []*snapshot.Snapshot
	seen := map[id.ID]bool{}
	for _, ref := range refs {
		s, err := r.FindSnapshot(ctx, ref, f)
		if err != nil {
			return nil, err
		}
		if !f.Match(s) {
			return nil, fmt.Errorf("snapshot %s (host %s, paths %v) does not match the --host, --path and --tag filters", s.ID.Short(), s.Host, s.Paths)
		}
		if !seen[s.ID] {
			seen[s.ID] = true
			snaps = append(snaps, s)
		}
	}
	return snaps, nil
}

// Remove deletes the snapshots' objects, a few at a time (each is one request to object storage).
func Remove(ctx context.Context, r *repo.Repository, snaps []*snapshot.Snapshot) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, s := range snaps {
		g.Go(func() error { return r.DeleteSnapshot(gctx, s.ID) })
	}
	return g.Wait()
}
