package repo_test

import (
	"context"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/repotest"
)

// An index file that another lists in Supersedes is ignored by LoadIndex, even while it is still stored:
// prune writes the replacement first and may already have deleted packs the old file lists.
func TestLoadIndexIgnoresSupersededFiles(t *testing.T) {
	ctx := context.Background()
	r, be := repotest.New(t)
	_, err := r.WithWriter(ctx, repo.WriterOptions{}, func(ctx context.Context, w *repo.Writer) error {
		if _, _, err := w.SaveBlob(ctx, pack.DataBlob, []byte("kept")); err != nil {
			return err
		}
		_, _, err := w.SaveBlob(ctx, pack.DataBlob, []byte("dropped"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	r = repotest.Reopen(t, be)
	old := r.IndexFiles()
	if len(old) != 1 {
		t.Fatalf("%d index files, want 1", len(old))
	}
	f, err := r.LoadIndexFile(ctx, old[0])
	if err != nil {
		t.Fatal(err)
	}
	keptID, droppedID := r.BlobID([]byte("kept")), r.BlobID([]byte("dropped"))
	// The replacement keeps only the pack of "kept" (both blobs share one pack here, so rewrite the entry).
	var repl index.File
	for _, p := range f.Packs {
		var blobs []pack.Blob
		for _, b := range p.Blobs {
			if b.ID == keptID {
				blobs = append(blobs, b)
			}
		}
		repl.Packs = append(repl.Packs, index.PackBlobs{ID: p.ID, Blobs: blobs})
	}
	repl.Supersedes = old
	newID, err := r.SaveIndexFile(ctx, &repl)
	if err != nil {
		t.Fatal(err)
	}
	r = repotest.Reopen(t, be)
	if !r.Index().Has(pack.DataBlob, keptID) {
		t.Error("the replacement's blob is not indexed")
	}
	if r.Index().Has(pack.DataBlob, droppedID) {
		t.Error("a blob only the superseded file lists is still indexed")
	}
	if files := r.IndexFiles(); len(files) != 1 || files[0] != newID {
		t.Errorf("IndexFiles = %v, want only the replacement %v", files, newID)
	}
}
