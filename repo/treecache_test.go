package repo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/tree"
)

// countingBackend counts reads of packs.
type countingBackend struct {
	storage.Backend
	packGets atomic.Int64
}

func (b *countingBackend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	if strings.HasPrefix(name, "data/") {
		b.packGets.Add(1)
	}
	return b.Backend.Get(ctx, name, offset, length)
}

// saveTrees stores n distinct tree blobs in one writer session and returns their IDs.
func saveTrees(t *testing.T, r *repo.Repository, n int) []id.ID {
	t.Helper()
	ids := make([]id.ID, n)
	_, err := r.WithWriter(ctx, repo.WriterOptions{}, func(ctx context.Context, w *repo.Writer) error {
		for i := range ids {
			tr := &tree.Tree{Nodes: []tree.Node{{Name: fmt.Sprintf("file-%04d", i), Type: tree.File, Mode: 0o644, Size: uint64(i)}}}
			var err error
			if ids[i], _, err = w.SaveBlob(ctx, pack.TreeBlob, tr.Encode()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// A walk of many trees reads each tree pack once, not once per tree.
func TestLoadTreeReadsEachTreePackOnce(t *testing.T) {
	r, be := repotest.New(t)
	ids := saveTrees(t, r, 200)
	cb := &countingBackend{Backend: be}
	r2 := repotest.Reopen(t, cb)
	packs := map[id.ID]bool{}
	for i, treeID := range ids {
		tr, err := r2.LoadTree(ctx, treeID)
		if err != nil {
			t.Fatalf("tree %d: %v", i, err)
		}
		if len(tr.Nodes) != 1 || tr.Nodes[0].Name != fmt.Sprintf("file-%04d", i) {
			t.Fatalf("tree %d decodes to %+v", i, tr.Nodes)
		}
		e, _ := r2.Index().Lookup(pack.TreeBlob, treeID)
		packs[e.Pack] = true
	}
	if got := cb.packGets.Load(); got != int64(len(packs)) {
		t.Fatalf("%d pack reads for %d trees in %d packs, want one read per pack", got, len(ids), len(packs))
	}
}

// A damaged tree blob in a cached pack is still reported as corrupt, and the pack's other trees still load.
func TestLoadTreeFromCachedPackAuthenticates(t *testing.T) {
	r, be := repotest.New(t)
	ids := saveTrees(t, r, 20)
	e, _ := r.Index().Lookup(pack.TreeBlob, ids[7])
	if err := be.Mutate(pack.Name(e.Pack), func(b []byte) []byte { b[e.Offset+3] ^= 1; return b }); err != nil {
		t.Fatal(err)
	}
	r2 := repotest.Reopen(t, be)
	for i, treeID := range ids {
		_, err := r2.LoadTree(ctx, treeID)
		if i == 7 {
			if !errors.Is(err, repo.ErrCorrupt) {
				t.Fatalf("damaged tree: got %v, want ErrCorrupt", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("tree %d: %v", i, err)
		}
	}
}
