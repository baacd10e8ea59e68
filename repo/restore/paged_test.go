package restore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage"
)

// reopenPaged opens the repository as a process with a tiny memory limit would: the whole index is paged.
func reopenPaged(t *testing.T, be storage.Backend, cache string) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, []byte(repotest.Password), repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.SetIndexPaging(index.Paging{Budget: repo.IndexBudget(1 << 10), Dir: cache})
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !r.Index().Paged() {
		t.Fatal("a 1 KiB memory limit left the index in memory")
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestTinyMemoryLimitBacksUpAndRestoresTheSame(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 7, Files: 80, Big: 3 << 20})
	r, be := repotest.New(t)
	first := runBackup(t, r, src, nil)

	// Unchanged: the paged index finds every blob, so nothing is read or added, and the snapshot's tree is
	// the in-memory run's to the byte.
	cache := t.TempDir()
	paged := reopenPaged(t, be, cache)
	again := runBackup(t, paged, src, first.Snapshot)
	if again.Snapshot.Tree != first.Snapshot.Tree || again.Summary.BytesRead != 0 || again.Summary.BlobsAdded != 0 {
		t.Fatalf("unchanged backup with a paged index: tree %s (want %s), %d bytes read, %d blobs added",
			again.Snapshot.Tree.Short(), first.Snapshot.Tree.Short(), again.Summary.BytesRead, again.Summary.BlobsAdded)
	}
	// Changed: new data goes in beside the paged index, and the same change backed up with the index in
	// memory gives the same tree.
	if err := os.WriteFile(filepath.Join(src, "new-file"), []byte("written after the first backup"), 0o644); err != nil {
		t.Fatal(err)
	}
	changed := runBackup(t, reopenPaged(t, be, cache), src, again.Snapshot)
	inMemory := runBackup(t, repotest.Reopen(t, be), src, again.Snapshot)
	if changed.Snapshot.Tree != inMemory.Snapshot.Tree || changed.Summary.FilesNew != 1 {
		t.Fatalf("changed backup: tree %s paged, %s in memory; %d new files", changed.Snapshot.Tree.Short(), inMemory.Snapshot.Tree.Short(), changed.Summary.FilesNew)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	runRestore(t, reopenPaged(t, be, cache), changed.Snapshot, dst)
	repotest.CompareTrees(t, src, dst)
	if left, _ := os.ReadDir(cache); len(left) != 0 {
		t.Fatalf("%d files left in the cache directory", len(left))
	}
}
