package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/prune"
)

type repoPruneOptions struct {
	*repoFlags
	repackThreshold float64
	maxWait         time.Duration
	dryRun          bool
	json            bool
}

func newRepoPruneCmd(f *repoFlags) *cobra.Command {
	o := &repoPruneOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete data no snapshot uses, and repack mostly unused packs, while backups keep running",
		Long: "Delete data no snapshot uses, and repack mostly unused packs. Planning and repacking run beside backups;\n" +
			"only the deletion takes the repository exclusively, for about as long as deleting the garbage takes.\n" +
			"If backups hold the repository for longer than --max-wait, prune deletes nothing and says who held it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().Float64Var(&o.repackThreshold, "repack-threshold", 0.5, "repack a pack when at least this fraction of it is unused (0 < f ≤ 1)")
	cmd.Flags().DurationVar(&o.maxWait, "max-wait", prune.DefaultMaxWait, "how long to wait for running backups before the deletion phase")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "plan and report, changing nothing")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as one JSON object")
	return cmd
}

func (o *repoPruneOptions) run(ctx context.Context, out io.Writer) error {
	if !(o.repackThreshold > 0 && o.repackThreshold <= 1) {
		return fmt.Errorf("--repack-threshold %v: want a fraction above 0 and at most 1, such as 0.5", o.repackThreshold)
	}
	if o.maxWait <= 0 {
		return fmt.Errorf("--max-wait %v: want a positive duration such as 10m", o.maxWait)
	}
	r, err := o.open(ctx, false)
	if err != nil {
		return err
	}
	res, err := prune.Run(ctx, r, prune.Options{RepackThreshold: o.repackThreshold, MaxWait: o.maxWait, DryRun: o.dryRun,
		Lock: lock.Options{WaitTimeout: o.lockWait}})
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(out).Encode(res)
	}
	printPruneResult(out, res)
	return nil
}

func printPruneResult(out io.Writer, res *prune.Result) {
	fmt.Fprintf(out, "%d snapshots, %d packs (%d in no index)\n", res.Snapshots, res.Packs, res.UnindexedPacks)
	if res.DryRun {
		fmt.Fprintf(out, "would delete %d packs, %d of them after repacking their used blobs, freeing %s; %s unused would remain\n",
			res.PacksDeleted, res.PacksRepacked, humanBytes(uint64(res.BytesFreed)), humanBytes(uint64(res.BytesUnused)))
		fmt.Fprintln(out, "dry run: nothing changed")
		return
	}
	fmt.Fprintf(out, "repacked %d packs (%d blobs, %s written)\n", res.PacksRepacked, res.BlobsRepacked, humanBytes(uint64(res.BytesRepacked)))
	fmt.Fprintf(out, "deleted %d packs, freeing %s; %s unused remains in packs that stay\n", res.PacksDeleted, humanBytes(uint64(res.BytesFreed)), humanBytes(uint64(res.BytesUnused)))
	if res.PacksKept > 0 {
		fmt.Fprintf(out, "kept %d packs that backups running meanwhile came to use\n", res.PacksKept)
	}
	fmt.Fprintf(out, "deleted %d index files, of which %d had their remaining packs written to one new file\n", res.IndexFilesDeleted, res.IndexFilesReplaced)
	fmt.Fprintf(out, "took %.1fs, of which %.1fs holding the repository exclusively\n", res.DurationSeconds, res.ExclusiveSeconds)
}
