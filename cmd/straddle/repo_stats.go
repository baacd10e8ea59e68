package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/lock"
)

type repoStatsOptions struct {
	*repoFlags
	json bool
}

func newRepoStatsCmd(f *repoFlags) *cobra.Command {
	o := &repoStatsOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Show how much the repository stores and what dedup and compression save",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as one JSON object")
	return cmd
}

func (o *repoStatsOptions) run(ctx context.Context, out io.Writer) error {
	// Stats reads trees through the index, so it holds a shared lock like restore: prune must not delete a
	// pack the loaded index points into.
	var s *repo.Stats
	err := o.withLock(ctx, lock.Shared, "stats", true, func(ctx context.Context, r *repo.Repository) error {
		var err error
		s, err = r.Stats(ctx)
		return err
	})
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(out).Encode(s)
	}
	fmt.Fprintf(out, "snapshots:        %d\n", s.Snapshots)
	fmt.Fprintf(out, "stored:           %s in %d packs, %d index files\n", humanBytes(uint64(s.StoredBytes)), s.Packs, s.IndexFiles)
	fmt.Fprintf(out, "unique data:      %s in %d data and %d tree blobs\n", humanBytes(s.RawBytes), s.DataBlobs, s.TreeBlobs)
	fmt.Fprintf(out, "all snapshots:    %s of files\n", humanBytes(s.TotalBytes))
	fmt.Fprintf(out, "dedup ratio:      %.2fx\n", s.DedupRatio)
	fmt.Fprintf(out, "compression:      %.2fx\n", s.Compression)
	return nil
}
