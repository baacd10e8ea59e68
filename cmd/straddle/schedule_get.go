package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func newScheduleGetCmd(f *backupFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List schedules, or show one, as a table (or -o json|yaml)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutputFormat(output); err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			cl, err := f.client()
			if err != nil {
				return err
			}
			return getSchedules(cmd.Context(), cl, f.namespace, name, output, time.Now(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "print json or yaml instead of a table")
	return cmd
}

// getSchedules prints one schedule (name) or all of the namespace's, as a table or in format.
func getSchedules(ctx context.Context, cl client.Client, namespace, name, format string, now time.Time, out io.Writer) error {
	var schedules []v1.Schedule
	var obj runtime.Object
	if name != "" {
		s, err := getSchedule(ctx, cl, namespace, name)
		if err != nil {
			return err
		}
		s.SetGroupVersionKind(v1.GroupVersion.WithKind("Schedule"))
		schedules, obj = []v1.Schedule{*s}, s
	} else {
		var list v1.ScheduleList
		if err := cl.List(ctx, &list, client.InNamespace(namespace)); err != nil {
			return fmt.Errorf("list schedules in namespace %s: %w", namespace, installHint(err))
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
		for i := range list.Items {
			list.Items[i].SetGroupVersionKind(v1.GroupVersion.WithKind("Schedule"))
		}
		list.SetGroupVersionKind(v1.GroupVersion.WithKind("ScheduleList"))
		schedules, obj = list.Items, &list
	}
	if format != "" {
		return printObject(out, obj, format)
	}
	if len(schedules) == 0 {
		_, err := fmt.Fprintf(out, "No schedules in namespace %s.\n", namespace)
		return err
	}
	_, err := io.WriteString(out, scheduleTable(schedules, now))
	return err
}

// scheduleTable is the table of `schedule get`: NAME, SCHEDULE, PAUSED, LAST BACKUP, AGE OF LAST, NEXT RUN.
func scheduleTable(schedules []v1.Schedule, now time.Time) string {
	var buf bytes.Buffer
	tw := newTable(&buf)
	fmt.Fprintln(tw, "NAME\tSCHEDULE\tPAUSED\tLAST BACKUP\tAGE OF LAST\tNEXT RUN")
	for i := range schedules {
		s := &schedules[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec.Schedule, strconv.FormatBool(s.Spec.Paused), orNone(s.Status.LastBackup),
			ago(s.Status.LastBackupTime, now), nextRunCell(s, now))
	}
	_ = tw.Flush()
	return buf.String()
}

// nextRunCell says when the schedule runs next: "in 5m", "due" (the controller is about to, or is not
// running), or why it does not.
func nextRunCell(s *v1.Schedule, now time.Time) string {
	switch {
	case s.Spec.Paused:
		return "paused"
	case s.Status.NextRunTime == nil && s.Status.Message != "":
		return "invalid"
	case s.Status.NextRunTime == nil:
		return none
	case !s.Status.NextRunTime.After(now):
		return "due"
	}
	return "in " + until(s.Status.NextRunTime, now)
}
