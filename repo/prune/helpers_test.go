package prune_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/prune"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/restore"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

// testOptions are prune's options for tests: locks retry in milliseconds.
func testOptions() prune.Options {
	return prune.Options{Lock: lock.Options{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond}}
}

func runBackup(t *testing.T, r *repo.Repository, dir string) *snapshot.Snapshot {
	t.Helper()
	res, err := backup.Run(context.Background(), r, backup.Options{Path: dir, Host: "test"})
	if err != nil {
		t.Fatalf("backup %s: %v", dir, err)
	}
	return res.Snapshot
}

// forget deletes a snapshot object, as forget does.
func forget(t *testing.T, be storage.Backend, s *snapshot.Snapshot) {
	t.Helper()
	if err := be.Delete(context.Background(), snapshot.Name(s.ID)); err != nil {
		t.Fatal(err)
	}
}

// mustRestore restores a snapshot from a freshly opened repository and compares it with its source.
func mustRestore(t *testing.T, be storage.Backend, s *snapshot.Snapshot, src string) {
	t.Helper()
	r := repotest.Reopen(t, be)
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Run(context.Background(), r, s, restore.Options{Target: dst}); err != nil {
		t.Fatalf("restore %s: %v", s.ID.Short(), err)
	}
	repotest.CompareTrees(t, src, dst)
}

// mustCheck runs check (with readData, check --read-data) on a fresh handle and fails on any error; it
// returns the notes.
func mustCheck(t *testing.T, be storage.Backend, readData bool) []check.Problem {
	t.Helper()
	res, err := check.Run(context.Background(), repotest.Reopen(t, be), check.Options{ReadData: readData})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	for _, e := range res.Errors {
		t.Errorf("check: %s", e)
	}
	return res.Notes
}

func objects(t *testing.T, be storage.Backend) []string {
	t.Helper()
	var names []string
	if err := be.List(context.Background(), "", func(fi storage.Info) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func countPrefix(t *testing.T, be storage.Backend, prefix string) int {
	t.Helper()
	n := 0
	for _, o := range objects(t, be) {
		if len(o) >= len(prefix) && o[:len(prefix)] == prefix {
			n++
		}
	}
	return n
}

// clone copies every object of a store into a new one.
func clone(t *testing.T, be storage.Backend) *mem.Backend {
	t.Helper()
	out := mem.New()
	for _, name := range objects(t, be) {
		data, err := storage.ReadAll(context.Background(), be, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := storage.PutBytes(context.Background(), out, name, data); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func mustPrune(t *testing.T, r *repo.Repository, opts prune.Options) *prune.Result {
	t.Helper()
	res, err := prune.Run(context.Background(), r, opts)
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	return res
}
