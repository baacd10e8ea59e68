package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// newSchedulePauseCmd builds `schedule pause` (pause true) or `schedule unpause`.
func newSchedulePauseCmd(f *backupFlags, pause bool) *cobra.Command {
	use, short := "pause NAME", "Pause a schedule: no new backups (running ones finish) until unpaused"
	if !pause {
		use, short = "unpause NAME", "Unpause a schedule: it backs up at its next tick (and once at once if it missed ticks)"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			return setSchedulePaused(cmd.Context(), cl, f.namespace, args[0], pause, cmd.OutOrStdout())
		},
	}
}

// setSchedulePaused sets spec.paused, retrying when the controller's status writes got in between.
func setSchedulePaused(ctx context.Context, cl client.Client, namespace, name string, pause bool, out io.Writer) error {
	changed := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := getSchedule(ctx, cl, namespace, name)
		if err != nil {
			return err
		}
		if s.Spec.Paused == pause {
			return nil
		}
		s.Spec.Paused = pause
		changed = true
		return cl.Update(ctx, s)
	})
	if err != nil {
		return fmt.Errorf("update schedule %s/%s: %w", namespace, name, err)
	}
	switch {
	case !changed && pause:
		_, err = fmt.Fprintf(out, "Schedule %q is already paused.\n", name)
	case !changed:
		_, err = fmt.Fprintf(out, "Schedule %q is not paused.\n", name)
	case pause:
		_, err = fmt.Fprintf(out, "Schedule %q paused: no new backups until straddle schedule unpause %s.\n", name, name)
	default:
		_, err = fmt.Fprintf(out, "Schedule %q unpaused: straddle schedule get %s shows its next run.\n", name, name)
	}
	return err
}
