// Package prune removes data no snapshot references, in two phases so that backups keep running: planning and
// repacking under a shared lock (as long as the repository is big), then deletion under a short exclusive
// lock (as long as the garbage is big). docs/repository-format.md explains why each step is safe.
package prune

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/lock"
)

// Options tune a prune; zero values mean defaults.
type Options struct {
	// RepackThreshold is the fraction of a pack's bytes no snapshot uses at which its used blobs are copied
	// into new packs and the pack deleted (default 0.5). Above 1 nothing is repacked.
	RepackThreshold float64
	// DryRun plans and reports, changing nothing.
	DryRun bool
	// MaxWait bounds the wait for the exclusive lock, that is for running backups to end (default 10 min).
	MaxWait time.Duration
	// Lock tunes both locks; its WaitTimeout applies to the shared one.
	Lock   lock.Options
	Writer repo.WriterOptions
}

// DefaultMaxWait is how long prune waits for the exclusive lock by default.
const DefaultMaxWait = 10 * time.Minute

func (o Options) withDefaults() (Options, error) {
	if o.RepackThreshold == 0 {
		o.RepackThreshold = 0.5
	}
	if o.RepackThreshold < 0 {
		return o, fmt.Errorf("repack threshold %v is negative", o.RepackThreshold)
	}
	if o.MaxWait <= 0 {
		o.MaxWait = DefaultMaxWait
	}
	return o, nil
}

// Result says what a prune found and did (or, in a dry run, would do).
type Result struct {
	DryRun         bool  `json:"dry_run"`
	Snapshots      int   `json:"snapshots"`
	Packs          int   `json:"packs"`
	UnindexedPacks int   `json:"unindexed_packs"`
	PacksDeleted   int   `json:"packs_deleted"`
	PacksRepacked  int   `json:"packs_repacked"`
	BlobsRepacked  int   `json:"blobs_repacked"`
	BytesRepacked  int64 `json:"bytes_repacked"`
	// PacksKept counts packs planned for deletion that a backup run during planning came to use.
	PacksKept          int     `json:"packs_kept"`
	IndexFilesReplaced int     `json:"index_files_replaced"`
	IndexFilesDeleted  int     `json:"index_files_deleted"`
	BytesFreed         int64   `json:"bytes_freed"`
	BytesUnused        int64   `json:"bytes_unused"`
	DurationSeconds    float64 `json:"duration_seconds"`
	// ExclusiveSeconds is how long the exclusive lock was held: the longest a backup waited for prune.
	ExclusiveSeconds float64 `json:"exclusive_seconds"`
}

// Run prunes r: it plans and repacks under a shared lock, then deletes under an exclusive one. If running
// backups keep the exclusive lock away for longer than MaxWait, it stops with lock.ErrLocked and deletes
// nothing; the repository stays correct, and data repacked so far is stored twice until the next prune.
func Run(ctx context.Context, r *repo.Repository, opts Options) (*Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	start := r.Now()
	res := &Result{DryRun: opts.DryRun}
	err = lock.WithLock(ctx, r, lock.Shared, lock.PurposePrune, opts.Lock, func(ctx context.Context) error {
		p, err := NewPlan(ctx, r, opts)
		if err != nil {
			return err
		}
		defer func() { *res = *p.Result() }()
		if opts.DryRun {
			return nil
		}
		if err := p.Repack(ctx); err != nil {
			return err
		}
		xo := opts.Lock
		xo.WaitTimeout = opts.MaxWait
		err = lock.WithLock(ctx, r, lock.Exclusive, lock.PurposePrune, xo, p.Delete)
		if errors.Is(err, lock.ErrLocked) {
			return fmt.Errorf("prune deleted nothing, the repository is unchanged and correct (%d repacked packs are stored twice until the next prune): %w", p.res.PacksRepacked, err)
		}
		return err
	})
	res.DurationSeconds = r.Now().Sub(start).Seconds()
	return res, err
}
