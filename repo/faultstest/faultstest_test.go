package faultstest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/storage/faulty"
	"github.com/straddle-io/straddle/repo/storage/fs"
	"github.com/straddle-io/straddle/repo/storage/retry"
)

// dirStorage is a directory backend behind the faulty wrapper behind the retry wrapper, with budgets small
// enough that a store that is down fails the backup in seconds.
func dirStorage(t *testing.T, seed uint64) Storage {
	t.Helper()
	be, err := fs.Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(be, faulty.Options{Seed: seed, StallFor: 10 * time.Second})
	rb, err := retry.New(fb, retry.Options{MaxAttempts: 10, MaxElapsed: 20 * time.Second, InitialBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond, RequestTimeout: 500 * time.Millisecond, StallTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return Storage{Backend: rb, SetRate: fb.SetRate, Injected: fb.TotalInjected}
}

func TestDirectorySurvivesTenPercentFaults(t *testing.T) {
	SurvivesFaults(t, dirStorage(t, 1), 0.1)
}

func TestDirectoryDownFailsCleanly(t *testing.T) {
	s := dirStorage(t, 2)
	// Every request fails at once or stalls past the request timeout: 4 attempts each, milliseconds apart.
	rb, err := retry.New(s.Backend.Unwrap(), retry.Options{MaxAttempts: 4, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		RequestTimeout: 200 * time.Millisecond, StallTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Backend = rb
	FailsCleanly(t, s, 30*time.Second)
}
