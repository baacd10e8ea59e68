package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"
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
	r, err := o.open(ctx, true)
	if err != nil {
		return err
	}
	s, err := r.Stats(ctx)
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
