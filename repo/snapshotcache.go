package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
)

// snapshotCache keeps sealed snapshot objects, byte for byte as stored, in a local directory per repository
// ID, so listing thousands of snapshots reads local files instead of one request each. It is never trusted:
// every object is authenticated and its name checked against its content as if read from storage, and the
// storage listing decides which snapshots exist (new ones are fetched, removed ones dropped).
type snapshotCache struct {
	dir string // empty: no cache
}

// UseCacheDir keeps a local cache of sealed snapshots under dir/<repository ID>/snapshots; empty turns it off.
func (r *Repository) UseCacheDir(dir string) {
	if dir == "" {
		r.snapCache = snapshotCache{}
		return
	}
	r.snapCache = snapshotCache{dir: filepath.Join(dir, r.cfg.ID.String(), "snapshots")}
}

func (c snapshotCache) path(snapID id.ID) string { return filepath.Join(c.dir, snapID.String()) }

// get returns the cached sealed object, or nil when there is none.
func (c snapshotCache) get(snapID id.ID) []byte {
	if c.dir == "" {
		return nil
	}
	b, err := os.ReadFile(c.path(snapID))
	if err != nil {
		return nil
	}
	return b
}

// put stores a sealed object; a cache that cannot be written only costs speed, so errors are ignored.
func (c snapshotCache) put(snapID id.ID, sealed []byte) {
	if c.dir == "" {
		return
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return
	}
	tmp, err := os.CreateTemp(c.dir, ".tmp-*")
	if err != nil {
		return
	}
	_, err = tmp.Write(sealed)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path(snapID))
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
}

// drop removes cached snapshots storage no longer lists (forgotten by this or another client).
func (c snapshotCache) drop(listed []id.ID) {
	if c.dir == "" {
		return
	}
	entries, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	keep := make(map[id.ID]struct{}, len(listed))
	for _, l := range listed {
		keep[l] = struct{}{}
	}
	for _, e := range entries {
		if sid, err := id.Parse(e.Name()); err == nil {
			if _, ok := keep[sid]; ok {
				continue
			}
		}
		_ = os.Remove(filepath.Join(c.dir, e.Name()))
	}
}

// drop1 removes one cached snapshot, deleted by this client.
func (c snapshotCache) drop1(snapID id.ID) {
	if c.dir != "" {
		_ = os.Remove(c.path(snapID))
	}
}

// readSnapshot returns a snapshot's sealed object from the cache or, failing that, from storage (caching it).
func (r *Repository) readSnapshot(ctx context.Context, snapID id.ID) (sealed []byte, cached bool, err error) {
	if b := r.snapCache.get(snapID); b != nil {
		return b, true, nil
	}
	b, err := storage.ReadAll(ctx, r.be, snapshot.Name(snapID))
	if err != nil {
		return nil, false, err
	}
	r.snapCache.put(snapID, b)
	return b, false, nil
}

// openSnapshot authenticates and decodes a sealed snapshot named snapID.
func (r *Repository) openSnapshot(snapID id.ID, sealed []byte) (*snapshot.Snapshot, error) {
	plain, err := r.key.Open(nil, sealed, snapshot.AD)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w: %w", snapID.Short(), err, ErrCorrupt)
	}
	s, err := snapshot.Decode(plain)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", snapID.Short(), err)
	}
	if s.ID != snapID {
		return nil, fmt.Errorf("load snapshot %s: content does not match its name: %w", snapID.Short(), ErrCorrupt)
	}
	return s, nil
}

// LoadSnapshot reads one snapshot, from the local cache when it holds it. A cached copy that does not open
// (damaged on local disk) is read from storage again.
func (r *Repository) LoadSnapshot(ctx context.Context, snapID id.ID) (*snapshot.Snapshot, error) {
	sealed, cached, err := r.readSnapshot(ctx, snapID)
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", snapID.Short(), err)
	}
	s, err := r.openSnapshot(snapID, sealed)
	if err != nil && cached && errors.Is(err, ErrCorrupt) {
		_ = os.Remove(r.snapCache.path(snapID))
		return r.LoadSnapshot(ctx, snapID)
	}
	return s, err
}
