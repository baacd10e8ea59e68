package repo_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

// countingGets counts reads of snapshot objects.
type countingGets struct {
	*mem.Backend
	gets atomic.Int64
}

func (b *countingGets) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if strings.HasPrefix(name, "snapshots/") {
		b.gets.Add(1)
	}
	return b.Backend.Get(ctx, name, offset, length)
}

func saveSnapshots(t *testing.T, r *repo.Repository, n, hour int) []id.ID {
	t.Helper()
	var ids []id.ID
	for i := range n {
		s := &snapshot.Snapshot{Time: time.Date(2026, 1, 1, hour+i, 0, 0, 0, time.UTC), Host: "h", Paths: []string{"/p"}, Tree: id.Random()}
		sid, err := r.SaveSnapshot(context.Background(), s)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sid)
	}
	return ids
}

func listIDs(t *testing.T, r *repo.Repository) []id.ID {
	t.Helper()
	snaps, err := r.ListSnapshots(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []id.ID
	for _, s := range snaps {
		out = append(out, s.ID)
	}
	return out
}

func TestSnapshotCacheReadsOnlyNewSnapshotsAndDropsForgottenOnes(t *testing.T) {
	be := &countingGets{Backend: mem.New()}
	other := repotest.Init(t, be) // another client, without a cache
	ids := saveSnapshots(t, other, 5, 0)

	cacheDir := t.TempDir()
	r := repotest.Reopen(t, be)
	r.UseCacheDir(cacheDir)
	if got := listIDs(t, r); len(got) != 5 || be.gets.Load() != 5 {
		t.Fatalf("first listing: %d snapshots with %d reads, want 5 and 5", len(got), be.gets.Load())
	}
	be.gets.Store(0)
	if got := listIDs(t, r); len(got) != 5 || be.gets.Load() != 0 {
		t.Fatalf("second listing: %d snapshots with %d reads from storage, want 5 from the cache", len(got), be.gets.Load())
	}
	cached := filepath.Join(cacheDir, r.Config().ID.String(), "snapshots")

	// The other client adds two and forgets one: only the new two are read, the forgotten one is dropped.
	added := saveSnapshots(t, other, 2, 10)
	if err := other.DeleteSnapshot(context.Background(), ids[0]); err != nil {
		t.Fatal(err)
	}
	be.gets.Store(0)
	got := listIDs(t, r)
	want := append(append([]id.ID(nil), ids[1:]...), added...)
	if len(got) != len(want) || be.gets.Load() != 2 {
		t.Fatalf("after another client's changes: %d snapshots with %d reads, want %d and 2", len(got), be.gets.Load(), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("snapshot %d is %s, want %s", i, got[i].Short(), want[i].Short())
		}
	}
	if files, _ := os.ReadDir(cached); len(files) != len(want) {
		t.Fatalf("the cache holds %d files, want %d", len(files), len(want))
	}
	// Cached objects are the sealed bytes as stored: no plaintext on local disk.
	b, err := os.ReadFile(filepath.Join(cached, want[0].String()))
	if err != nil || strings.Contains(string(b), `"host"`) {
		t.Fatalf("cached snapshot is not sealed (%v)", err)
	}
	// A damaged cached copy is read from storage again, not trusted.
	if err := os.WriteFile(filepath.Join(cached, want[0].String()), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	be.gets.Store(0)
	if got := listIDs(t, r); len(got) != len(want) || be.gets.Load() != 1 {
		t.Fatalf("with a damaged cache file: %d snapshots with %d reads, want %d and 1", len(got), be.gets.Load(), len(want))
	}
	// A snapshot this client saves is cached at once.
	mine := saveSnapshots(t, r, 1, 20)
	be.gets.Store(0)
	if got := listIDs(t, r); got[len(got)-1] != mine[0] || be.gets.Load() != 0 {
		t.Fatalf("own snapshot read %d times from storage", be.gets.Load())
	}
}
