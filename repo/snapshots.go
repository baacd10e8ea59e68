package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
)

// SaveSnapshot seals and stores a snapshot and sets its ID. Call it only after the index files for every blob
// it references are stored.
func (r *Repository) SaveSnapshot(ctx context.Context, s *snapshot.Snapshot) (id.ID, error) {
	plain, err := s.Encode()
	if err != nil {
		return id.Null, err
	}
	s.ID = id.Hash(plain)
	sealed := r.key.Seal(nil, plain, snapshot.AD)
	if err := storage.PutBytes(ctx, r.be, snapshot.Name(s.ID), sealed); err != nil {
		return id.Null, fmt.Errorf("save snapshot %s: %w", s.ID.Short(), err)
	}
	r.snapCache.put(s.ID, sealed)
	return s.ID, nil
}

// DeleteSnapshot removes one snapshot object. The data it references stays until prune finds it unused.
func (r *Repository) DeleteSnapshot(ctx context.Context, snapID id.ID) error {
	if err := r.be.Delete(ctx, snapshot.Name(snapID)); err != nil {
		return fmt.Errorf("delete snapshot %s: %w", snapID.Short(), err)
	}
	r.snapCache.drop1(snapID)
	return nil
}

// ListSnapshots loads every snapshot, oldest first, from the local snapshot cache where it can (see
// UseCacheDir): only snapshots new since the last listing are read from storage, and cached ones storage no
// longer lists are dropped. A snapshot deleted between the listing and its loading
// (by a forget running meanwhile) is left out, as if the listing had come a moment later: it is gone either
// way, and failing would make every prune, check or backup that meets a concurrent forget fail.
func (r *Repository) ListSnapshots(ctx context.Context) ([]*snapshot.Snapshot, error) {
	ids, err := r.listIDs(ctx, "snapshots/")
	if err != nil {
		return nil, err
	}
	snaps := make([]*snapshot.Snapshot, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i, sid := range ids {
		g.Go(func() error {
			s, err := r.LoadSnapshot(gctx, sid)
			if errors.Is(err, storage.ErrNotFound) {
				return nil
			}
			snaps[i] = s
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	r.snapCache.drop(ids)
	snaps = slices.DeleteFunc(snaps, func(s *snapshot.Snapshot) bool { return s == nil })
	slices.SortFunc(snaps, func(a, b *snapshot.Snapshot) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return id.Compare(a.ID, b.ID)
	})
	return snaps, nil
}

// Filter selects snapshots; empty fields match everything.
type Filter struct {
	Host string
	Path string
	Tags map[string]string
}

// Match reports whether s passes the filter.
func (f Filter) Match(s *snapshot.Snapshot) bool {
	if f.Host != "" && s.Host != f.Host {
		return false
	}
	if f.Path != "" && !slices.Contains(s.Paths, f.Path) {
		return false
	}
	for k, v := range f.Tags {
		if s.Tags[k] != v {
			return false
		}
	}
	return true
}

// FindSnapshot resolves "latest" (the newest snapshot passing the filter) or a unique ID prefix.
func (r *Repository) FindSnapshot(ctx context.Context, ref string, f Filter) (*snapshot.Snapshot, error) {
	if ref == "latest" {
		snaps, err := r.ListSnapshots(ctx)
		if err != nil {
			return nil, err
		}
		for _, s := range slices.Backward(snaps) {
			if f.Match(s) {
				return s, nil
			}
		}
		return nil, fmt.Errorf("no snapshot matches: %w", ErrNotFound)
	}
	if full, err := id.Parse(ref); err == nil {
		return r.LoadSnapshot(ctx, full)
	}
	if len(ref) < 4 || strings.Trim(ref, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%q is neither \"latest\" nor a snapshot ID (at least 4 hex digits)", ref)
	}
	ids, err := r.listIDs(ctx, "snapshots/")
	if err != nil {
		return nil, err
	}
	var match []id.ID
	for _, i := range ids {
		if strings.HasPrefix(i.String(), ref) {
			match = append(match, i)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("no snapshot with ID %s: %w", ref, ErrNotFound)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot ID prefix %s matches %d snapshots: %w", ref, len(match), ErrAmbiguous)
}
