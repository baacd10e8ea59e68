package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/restore"
)

type repoRestoreOptions struct {
	*repoFlags
	target   string
	includes []string
	progress bool
}

func newRepoRestoreCmd(f *repoFlags) *cobra.Command {
	o := &repoRestoreOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT --target DIR",
		Short: "Restore a snapshot (an ID, a unique ID prefix, or latest) into a directory",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.progress = isTerminal(os.Stderr)
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&o.target, "target", "", "directory to restore into (created if missing)")
	cmd.Flags().StringArrayVar(&o.includes, "include", nil, "restore only this path inside the snapshot (repeatable)")
	_ = cmd.MarkFlagRequired("target")
	return cmd
}

func (o *repoRestoreOptions) run(ctx context.Context, ref string, out, errOut io.Writer) error {
	var includes []string
	for _, inc := range o.includes {
		c, err := restore.CleanInclude(inc)
		if err != nil {
			return err
		}
		includes = append(includes, c)
	}
	return o.withLock(ctx, lock.Shared, "restore", true, func(ctx context.Context, r *repo.Repository) error {
		return o.restore(ctx, r, ref, includes, out, errOut)
	})
}

func (o *repoRestoreOptions) restore(ctx context.Context, r *repo.Repository, ref string, includes []string, out, errOut io.Writer) error {
	snap, err := r.FindSnapshot(ctx, ref, repo.Filter{})
	if err != nil {
		return fmt.Errorf("find snapshot %s: %w", ref, err)
	}
	if len(snap.Excludes) > 0 {
		// What the backup left out cannot come back: say so before the user looks for it.
		fmt.Fprintf(out, "snapshot %s was taken with excludes: %s\n", snap.ID.Short(), strings.Join(snap.Excludes, ", "))
	}
	opts := restore.Options{Target: o.target, Include: includes}
	var bar *progressBar
	if o.progress {
		bar = newProgressBar(errOut, "restore")
		opts.Progress = func(p restore.Progress) { bar.update(p.BytesDone, p.BytesTotal, p.FilesDone, p.FilesTotal, true) }
	}
	start := time.Now()
	res, err := restore.Run(ctx, r, snap, opts)
	bar.finish()
	if err != nil {
		return fmt.Errorf("restore of snapshot %s failed, the target is incomplete: %w", snap.ID.Short(), err)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(errOut, "warning: %s\n", w)
	}
	fmt.Fprintf(out, "restored snapshot %s to %s: %d files, %d directories, %d links, %s in %.1fs\n",
		snap.ID.Short(), o.target, res.Files, res.Dirs, res.Links, humanBytes(res.Bytes), time.Since(start).Seconds())
	return nil
}
