package backup

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/repotest"
)

// A backup whose lock may look stale to others by the time it finishes (the process was paused) must not
// save its snapshot: prune may have deleted what it references.
func TestBackupWhoseLockWentStaleSavesNoSnapshot(t *testing.T) {
	_, be := repotest.New(t)
	var ns atomic.Int64
	ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, ns.Load()) }
	r, err := repo.Open(context.Background(), be, []byte(repotest.Password), repo.OpenOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	opts := lock.Options{RefreshInterval: time.Hour, StaleTimeout: 3 * time.Hour}
	for _, pause := range []time.Duration{0, 3 * time.Hour} {
		err := lock.WithLock(context.Background(), r, lock.Shared, "backup", opts, func(ctx context.Context) error {
			if err := r.LoadIndex(ctx); err != nil {
				return err
			}
			ns.Add(int64(pause))
			_, err := Run(ctx, r, Options{Path: dir, Host: "h", Now: now})
			return err
		})
		snaps, lerr := r.ListSnapshots(context.Background())
		if lerr != nil {
			t.Fatal(lerr)
		}
		switch {
		case pause == 0 && (err != nil || len(snaps) != 1):
			t.Fatalf("backup with a fresh lock: %v, %d snapshots", err, len(snaps))
		case pause > 0 && (!errors.Is(err, lock.ErrLockLost) || len(snaps) != 1):
			t.Fatalf("backup after a pause past the stale timeout: %v, %d snapshots; want ErrLockLost and no new snapshot", err, len(snaps))
		}
	}
}
