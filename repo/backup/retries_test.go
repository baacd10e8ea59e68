package backup

import (
	"context"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage/faulty"
	"github.com/straddle-io/straddle/repo/storage/mem"
	"github.com/straddle-io/straddle/repo/storage/retry"
)

func TestSummaryCountsStorageRetries(t *testing.T) {
	ctx := context.Background()
	fb := faulty.New(mem.New(), faulty.Options{})
	rb, err := retry.New(fb, retry.Options{RequestTimeout: -1, StallTimeout: -1,
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	r := repotest.Init(t, rb)
	dir := t.TempDir()
	repotest.MakeTree(t, dir, repotest.TreeOptions{Seed: 3, Files: 20})
	// A retry before the backup is not the backup's.
	fb.FailNext(faulty.OpStat, faulty.Transient)
	if _, err := rb.Stat(ctx, "config"); err != nil {
		t.Fatal(err)
	}
	fb.FailNext(faulty.OpPut, faulty.Transient, faulty.Reset, faulty.LostResponse)
	res, err := Run(ctx, r, Options{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.StorageRetries != 3 {
		t.Fatalf("StorageRetries = %d, want the 3 of the backup", res.Summary.StorageRetries)
	}
	snap, err := repotest.Reopen(t, rb).LoadSnapshot(ctx, res.Snapshot.ID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Summary.StorageRetries != 3 {
		t.Fatalf("stored summary has %d retries", snap.Summary.StorageRetries)
	}

	// A backend that does not retry reports none.
	plain, _ := repotest.New(t)
	res, err = Run(ctx, plain, Options{Path: dir})
	if err != nil || res.Summary.StorageRetries != 0 {
		t.Fatalf("plain backend: %v, %d retries", err, res.Summary.StorageRetries)
	}
}
