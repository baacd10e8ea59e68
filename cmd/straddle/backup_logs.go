package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func newBackupLogsCmd(f *backupFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the Kubernetes Events of a backup and its volume backups, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return backupLogs(cmd.Context(), f, args[0], cmd.OutOrStdout())
		},
	}
}

func backupLogs(ctx context.Context, f *backupFlags, name string, out io.Writer) error {
	cl, err := f.client()
	if err != nil {
		return err
	}
	b, err := getBackup(ctx, cl, f.namespace, name)
	if err != nil {
		return err
	}
	pvbs, err := listVolumeBackups(ctx, cl, b)
	if err != nil {
		return err
	}
	return printEvents(ctx, cl, f.namespace, "backup", name, backupEventObjects(b, pvbs), out)
}

// printEvents prints the Events about objects (a Backup or Restore, called kind name, and its volumes), which
// live in the install namespace with them, oldest first, or says there are none.
func printEvents(ctx context.Context, cl client.Client, namespace, kind, name string, objects map[string]eventObject, out io.Writer) error {
	var events corev1.EventList
	if err := cl.List(ctx, &events, client.InNamespace(namespace)); err != nil {
		return fmt.Errorf("list events in namespace %s: %w", namespace, err)
	}
	rows := eventsAbout(objects, events.Items)
	if len(rows) == 0 {
		_, err := fmt.Fprintf(out, "No events for %s %q (Kubernetes keeps events for an hour by default); straddle %s describe %s shows its state.\n", kind, name, kind, name)
		return err
	}
	_, err := io.WriteString(out, eventTable(rows))
	return err
}

// eventRow is one Event about the backup, with the object it is about named for a user.
type eventRow struct {
	at     time.Time
	object string
	event  *corev1.Event
}

// eventObject is an object whose Events are shown: its UID (to tell it from an earlier object of the same
// name) and its name as the OBJECT column shows it.
type eventObject struct {
	uid  types.UID
	name string
}

// backupEventObjects keys the Backup and its PodVolumeBackups by "Kind/name", as Events refer to them.
func backupEventObjects(b *v1.Backup, pvbs []v1.PodVolumeBackup) map[string]eventObject {
	objects := map[string]eventObject{"Backup/" + b.Name: {b.UID, "backup"}}
	for i := range pvbs {
		objects["PodVolumeBackup/"+pvbs[i].Name] = eventObject{pvbs[i].UID, "pvb " + volumeName(&pvbs[i])}
	}
	return objects
}

// backupEvents picks the Events about the Backup or one of its PodVolumeBackups, oldest first.
func backupEvents(b *v1.Backup, pvbs []v1.PodVolumeBackup, events []corev1.Event) []eventRow {
	return eventsAbout(backupEventObjects(b, pvbs), events)
}

// eventsAbout picks the Events about objects (keyed "Kind/name"), oldest first.
func eventsAbout(objects map[string]eventObject, events []corev1.Event) []eventRow {
	var rows []eventRow
	for i := range events {
		e := &events[i]
		ref := e.InvolvedObject
		if ref.APIVersion != "" && ref.APIVersion != v1.GroupVersion.String() {
			continue
		}
		obj, ok := objects[ref.Kind+"/"+ref.Name]
		// A UID that differs is an earlier object of the same name, deleted and created again.
		if !ok || ref.UID != "" && obj.uid != "" && ref.UID != obj.uid {
			continue
		}
		rows = append(rows, eventRow{at: eventTime(e), object: obj.name, event: e})
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].at.Before(rows[j].at) })
	return rows
}

// eventTime is when an event last happened: events.k8s.io writers fill eventTime (and series), core/v1
// writers lastTimestamp.
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

// eventTable prints TIME, OBJECT, TYPE, REASON, MESSAGE, with "(xN)" for an event seen N times.
func eventTable(rows []eventRow) string {
	var buf bytes.Buffer
	tw := newTable(&buf)
	fmt.Fprintln(tw, "TIME\tOBJECT\tTYPE\tREASON\tMESSAGE")
	for _, r := range rows {
		msg := oneLine(r.event.Message)
		count := r.event.Count
		if r.event.Series != nil {
			count = r.event.Series.Count
		}
		if count > 1 {
			msg += fmt.Sprintf(" (x%d)", count)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.at.UTC().Format(time.RFC3339), r.object, orNone(r.event.Type), orNone(r.event.Reason), msg)
	}
	_ = tw.Flush()
	return buf.String()
}
