package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo/lock"
)

type repoUnlockOptions struct {
	*repoFlags
	removeAll bool
	dryRun    bool
}

func newRepoUnlockCmd(f *repoFlags) *cobra.Command {
	o := &repoUnlockOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Remove stale repository locks (left by processes that died), and say which locks stay and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().BoolVar(&o.removeAll, "remove-all", false, "remove every lock, live ones too (only when their holders are surely gone)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "list the locks and what would be removed, removing nothing")
	return cmd
}

func (o *repoUnlockOptions) run(ctx context.Context, out, errOut io.Writer) error {
	r, err := o.open(ctx, false)
	if err != nil {
		return err
	}
	if o.removeAll && !o.dryRun {
		fmt.Fprintln(errOut, "warning: removing every lock, live ones too: if their holders still run, a prune may delete data a running backup needs")
	}
	verdicts, err := lock.Unlock(ctx, r, lock.Options{}, o.removeAll, o.dryRun)
	for _, v := range verdicts {
		fmt.Fprintln(out, describeVerdict(v, r.Now(), o.dryRun))
	}
	if err != nil {
		return err
	}
	if len(verdicts) == 0 {
		fmt.Fprintln(out, "no locks")
	}
	return nil
}

func describeVerdict(v lock.Verdict, now time.Time, dryRun bool) string {
	what := "unreadable lock " + v.ID.Short()
	if v.Unreadable == "" {
		what = fmt.Sprintf("%s lock %s: %s", v.Kind, v.ID.Short(), v.Lock)
	}
	switch {
	case v.Removed:
		return fmt.Sprintf("removed %s (%s)", what, reasonOrLive(v, now))
	case dryRun && v.Stale != "":
		return fmt.Sprintf("would remove %s (%s)", what, v.Stale)
	default:
		return fmt.Sprintf("kept %s (%s)", what, reasonOrLive(v, now))
	}
}

func reasonOrLive(v lock.Verdict, now time.Time) string {
	if v.Stale != "" {
		return "stale: " + v.Stale
	}
	return fmt.Sprintf("live: refreshed %s ago", now.Sub(v.Refreshed).Round(time.Second))
}
