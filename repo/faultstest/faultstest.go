// Package faultstest runs the engine (backup, restore, check) over storage that fails on purpose, so any
// storage stack (a directory behind the faulty wrapper, MinIO behind the fault proxy) can be shown to survive
// a misbehaving object store, and to fail cleanly when the store is down.
package faultstest

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/restore"
	"github.com/straddle-io/straddle/repo/storage/retry"
)

// Storage is a storage stack under test.
type Storage struct {
	// Backend is what the engine uses: a retry wrapper over storage that injects faults.
	Backend *retry.Backend
	// SetRate sets the fault rate (0..1) below the retry wrapper.
	SetRate func(rate float64)
	// Injected returns how many faults have been injected so far.
	Injected func() uint64
}

// TreeOptions is the tree the scenarios back up: every kind of entry, a multi-chunk file, and enough small
// files for several packs.
var TreeOptions = repotest.TreeOptions{Seed: 21, Files: 80, Big: 6 << 20}

// SurvivesFaults backs up and restores a generated tree while rate of the requests fail, and checks that the
// restore is byte for byte, that every pack reads back and authenticates, and that retries were made.
func SurvivesFaults(t *testing.T, s Storage, rate float64) {
	t.Helper()
	ctx := context.Background()
	s.SetRate(0)
	repotest.Init(t, s.Backend)
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, TreeOptions)

	s.SetRate(rate)
	retriesBefore := s.Backend.Retries()
	r := repotest.Reopen(t, s.Backend)
	res, err := backup.Run(ctx, r, backup.Options{Path: src, Host: "faults"})
	if err != nil {
		t.Fatalf("backup with %.0f%% of requests failing: %v", rate*100, err)
	}
	if len(res.Warnings) > 0 {
		t.Fatalf("backup warnings: %v", res.Warnings)
	}
	// The summary counts the retries up to the snapshot itself being saved.
	if backupRetries := s.Backend.Retries() - retriesBefore; res.Summary.StorageRetries > backupRetries ||
		res.Summary.StorageRetries == 0 && backupRetries > 1 {
		t.Errorf("summary counts %d storage retries; the backup made %d", res.Summary.StorageRetries, backupRetries)
	}

	// Restore in a fresh process's view: everything comes from the faulty storage.
	r = repotest.Reopen(t, s.Backend)
	snap, err := r.LoadSnapshot(ctx, res.Snapshot.ID)
	if err != nil {
		t.Fatalf("load snapshot: %v", err)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := restore.Run(ctx, r, snap, restore.Options{Target: dst}); err != nil {
		t.Fatalf("restore with %.0f%% of requests failing: %v", rate*100, err)
	}
	repotest.CompareTrees(t, src, dst)

	chk, err := check.Run(ctx, r, check.Options{ReadData: true})
	if err != nil {
		t.Fatalf("check --read-data with %.0f%% of requests failing: %v", rate*100, err)
	}
	if !chk.OK() || chk.PacksRead == 0 {
		t.Fatalf("check --read-data: %d packs read, errors %v", chk.PacksRead, chk.Errors)
	}
	if s.Backend.Retries() == retriesBefore || s.Injected() == 0 {
		t.Fatalf("%d faults injected, %d retries: the scenario ran without faults", s.Injected(), s.Backend.Retries()-retriesBefore)
	}
	t.Logf("%d faults injected, %d retries (backup %d)", s.Injected(), s.Backend.Retries()-retriesBefore, res.Summary.StorageRetries)
}

// FailsCleanly backs up while every request fails: the backup must fail within maxTime with an error that
// says storage gave up, and leave a repository that checks clean, with no snapshot of the failed backup.
func FailsCleanly(t *testing.T, s Storage, maxTime time.Duration) {
	t.Helper()
	ctx := context.Background()
	s.SetRate(0)
	repotest.Init(t, s.Backend)
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, TreeOptions)
	r := repotest.Reopen(t, s.Backend)

	s.SetRate(1)
	start := time.Now()
	_, err := backup.Run(ctx, r, backup.Options{Path: src, Host: "faults"})
	took := time.Since(start)
	if err == nil {
		t.Fatal("backup succeeded with every storage request failing")
	}
	if took > maxTime {
		t.Errorf("the failing backup took %v, more than %v", took, maxTime)
	}
	if _, ok := errors.AsType[*retry.GaveUpError](err); !ok || !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("error does not say storage gave up: %v", err)
	}
	if errors.Is(err, context.Canceled) {
		t.Errorf("error blames a cancellation that only followed the storage failure: %v", err)
	}
	t.Logf("backup failed after %v: %v", took.Round(time.Millisecond), err)

	s.SetRate(0)
	r = repotest.Reopen(t, s.Backend)
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 0 {
		t.Errorf("the failed backup left %d snapshots", len(snaps))
	}
	CheckClean(t, r)
}

// CheckClean runs check --read-data and fails the test on any error it reports.
func CheckClean(t *testing.T, r *repo.Repository) {
	t.Helper()
	chk, err := check.Run(context.Background(), r, check.Options{ReadData: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !chk.OK() {
		t.Fatalf("check found errors: %v", chk.Errors)
	}
}
