package main

import (
	"context"
	"fmt"
	"io"
	"sort"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func newRestoreLogsCmd(f *backupFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "logs NAME",
		Short: "Print the Kubernetes Events of a restore and its volume restores, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return restoreLogs(cmd.Context(), f, args[0], cmd.OutOrStdout())
		},
	}
}

func restoreLogs(ctx context.Context, f *backupFlags, name string, out io.Writer) error {
	cl, err := f.client()
	if err != nil {
		return err
	}
	r, err := getRestore(ctx, cl, f.namespace, name)
	if err != nil {
		return err
	}
	pvrs, err := listVolumeRestores(ctx, cl, r)
	if err != nil {
		return err
	}
	// The Restore and its PodVolumeRestores live in the install namespace, and so do their Events.
	var events corev1.EventList
	if err := cl.List(ctx, &events, client.InNamespace(f.namespace)); err != nil {
		return fmt.Errorf("list events in namespace %s: %w", f.namespace, err)
	}
	rows := restoreEvents(r, pvrs, events.Items)
	if len(rows) == 0 {
		_, err := fmt.Fprintf(out, "No events for restore %q (Kubernetes keeps events for an hour by default); straddle restore describe %s shows its state.\n", name, name)
		return err
	}
	_, err = io.WriteString(out, eventTable(rows))
	return err
}

// restoreEvents picks the Events about the Restore or one of its PodVolumeRestores, oldest first.
func restoreEvents(r *v1.Restore, pvrs []v1.PodVolumeRestore, events []corev1.Event) []eventRow {
	type object struct {
		uid  types.UID
		name string
	}
	objects := map[string]object{"Restore/" + r.Name: {r.UID, "restore"}}
	for i := range pvrs {
		objects["PodVolumeRestore/"+pvrs[i].Name] = object{pvrs[i].UID, "pvr " + restoreVolumeName(&pvrs[i])}
	}
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
