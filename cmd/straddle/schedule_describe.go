package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/forget"
)

func newScheduleDescribeCmd(f *backupFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a schedule: its settings, retention, status, its backups and their phases, and recent events",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := f.client()
			if err != nil {
				return err
			}
			v, err := loadScheduleView(cmd.Context(), cl, f.namespace, args[0])
			if err != nil {
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), describeSchedule(v, time.Now()))
			return err
		},
	}
}

// scheduleView is everything describe shows about one schedule.
type scheduleView struct {
	schedule *v1.Schedule
	backups  []v1.Backup
	events   []eventRow
}

func loadScheduleView(ctx context.Context, cl client.Client, namespace, name string) (scheduleView, error) {
	s, err := getSchedule(ctx, cl, namespace, name)
	if err != nil {
		return scheduleView{}, err
	}
	backups, err := listScheduleBackups(ctx, cl, s)
	if err != nil {
		return scheduleView{}, err
	}
	var events corev1.EventList
	if err := cl.List(ctx, &events, client.InNamespace(namespace)); err != nil {
		return scheduleView{}, fmt.Errorf("list events in namespace %s: %w", namespace, err)
	}
	rows := eventsAbout(map[string]eventObject{"Schedule/" + s.Name: {s.UID, "schedule"}}, events.Items)
	return scheduleView{schedule: s, backups: backups, events: rows}, nil
}

// describeEvents is how many of the newest events describe shows.
const describeEvents = 10

// describeSchedule renders describe's text; now makes relative times testable.
func describeSchedule(v scheduleView, now time.Time) string {
	s, st := v.schedule, &v.schedule.Status
	var buf bytes.Buffer
	tw := newTable(&buf)
	field := func(k, val string) { fmt.Fprintf(tw, "%s:\t%s\n", k, val) }
	field("Name", s.Name)
	field("Namespace", s.Namespace)
	field("Schedule", s.Spec.Schedule+" (UTC)")
	field("Paused", strconv.FormatBool(s.Spec.Paused))
	field("Retention", retentionText(s.Spec.Retention))
	t := &s.Spec.Template
	loc := t.StorageLocation
	if loc == "" {
		loc = "the default"
	}
	field("Storage location", loc)
	field("Namespaces", namespacesText(t))
	field("Selector", selectorText(t.LabelSelector))
	field("Default volumes to fs backup", defaultVolumesText(t.DefaultVolumesToFsBackup))
	ttl := "720h0m0s (default)"
	if t.TTL != nil {
		ttl = t.TTL.Duration.String()
	}
	field("Backup TTL", ttl)
	field("Last backup", orNone(st.LastBackup))
	field("Last backup time", timestamp(st.LastBackupTime, now))
	field("Next run", nextRunText(s, now))
	field("Skipped runs", fmt.Sprintf("%d (a backup was still running)", st.SkippedRuns))
	field("Last skipped", timestamp(st.LastSkippedTime, now))
	if st.Message != "" {
		field("Message", oneLine(st.Message))
	}
	_ = tw.Flush()

	fmt.Fprintf(&buf, "\nBackups (%d):\n", len(v.backups))
	if len(v.backups) == 0 {
		fmt.Fprintln(&buf, "  none yet")
	} else {
		tw = newTable(&buf)
		fmt.Fprintln(tw, "  NAME\tPHASE\tVOLUMES\tSTARTED\tEXPIRES")
		for i := range v.backups {
			b := &v.backups[i]
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", b.Name, phaseOf(b), volumesCell(&b.Status), ago(b.Status.StartTimestamp, now), until(b.Status.Expiration, now))
		}
		_ = tw.Flush()
	}

	fmt.Fprintln(&buf, "\nEvents:")
	events := v.events
	if len(events) == 0 {
		fmt.Fprintln(&buf, "  none (Kubernetes keeps events for an hour by default)")
		return buf.String()
	}
	if len(events) > describeEvents {
		events = events[len(events)-describeEvents:]
	}
	for _, line := range bytes.Split(bytes.TrimRight([]byte(eventTable(events)), "\n"), []byte("\n")) {
		fmt.Fprintf(&buf, "  %s\n", line)
	}
	return buf.String()
}

// retentionText lists the retention rules in force, as `repo forget` names them.
func retentionText(r *v1.RetentionPolicy) string {
	if r == nil || *r == (v1.RetentionPolicy{}) {
		return "none (each backup is kept until its TTL)"
	}
	text := forget.Policy{Last: r.KeepLast, Hourly: r.KeepHourly, Daily: r.KeepDaily, Weekly: r.KeepWeekly, Monthly: r.KeepMonthly}.String()
	return text + " (and each backup's TTL)"
}

// nextRunText is describe's longer form of the NEXT RUN cell.
func nextRunText(s *v1.Schedule, now time.Time) string {
	switch {
	case s.Spec.Paused:
		return "none: paused (straddle schedule unpause " + s.Name + ")"
	case s.Status.NextRunTime == nil && s.Status.Message != "":
		return "none: the schedule cannot run (see Message)"
	}
	return timestamp(s.Status.NextRunTime, now)
}
