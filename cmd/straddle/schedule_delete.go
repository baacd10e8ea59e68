package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func newScheduleDeleteCmd(f *backupFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a schedule; the backups it made are kept (each goes at its TTL, or with straddle backup delete)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			return deleteSchedule(cmd.Context(), cl, f.namespace, args[0], cmd.OutOrStdout())
		},
	}
}

// deleteSchedule deletes the Schedule and says what happens to its Backups: nothing. They carry no owner
// reference, as in Velero, so a schedule deleted by mistake costs no backup.
func deleteSchedule(ctx context.Context, cl client.Client, namespace, name string, out io.Writer) error {
	s, err := getSchedule(ctx, cl, namespace, name)
	if err != nil {
		return err
	}
	backups, err := listScheduleBackups(ctx, cl, s)
	if err != nil {
		return err
	}
	if err := cl.Delete(ctx, s); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete schedule %s/%s: %w", namespace, name, err)
	}
	_, err = fmt.Fprintf(out, "Schedule %q deleted. Its %d backup(s) are kept: each is deleted at its TTL, or by straddle backup delete (kubectl -n %s get backups -l %s=%s lists them).\n",
		name, len(backups), namespace, v1.ScheduleLabel, name)
	return err
}
