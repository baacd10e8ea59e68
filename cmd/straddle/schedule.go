package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// newScheduleCmd groups the `straddle schedule` commands. Schedules live in the install namespace, as
// Backups do, so they share backupFlags.
func newScheduleCmd() *cobra.Command {
	f := &backupFlags{}
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Back up periodically through the cluster: create, get, describe, pause, unpause, delete",
	}
	f.register(cmd)
	cmd.AddCommand(newScheduleCreateCmd(f), newScheduleGetCmd(f), newScheduleDescribeCmd(f),
		newSchedulePauseCmd(f, true), newSchedulePauseCmd(f, false), newScheduleDeleteCmd(f))
	return cmd
}

// getSchedule reads one Schedule, turning "not found" into a sentence that says where it looked.
func getSchedule(ctx context.Context, cl client.Client, namespace, name string) (*v1.Schedule, error) {
	var s v1.Schedule
	err := cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &s)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("schedule %q not found in namespace %s (straddle schedule get lists them)", name, namespace)
	}
	if err != nil {
		return nil, fmt.Errorf("read schedule %s/%s: %w", namespace, name, installHint(err))
	}
	return &s, nil
}

// listScheduleBackups lists the Backups a schedule created (labelled with its name), oldest first: their
// names end with the tick time, so name order is time order.
func listScheduleBackups(ctx context.Context, cl client.Client, s *v1.Schedule) ([]v1.Backup, error) {
	var list v1.BackupList
	if err := cl.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingLabels{v1.ScheduleLabel: s.Name}); err != nil {
		return nil, fmt.Errorf("list the backups of schedule %s/%s: %w", s.Namespace, s.Name, installHint(err))
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}
