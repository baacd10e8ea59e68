package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

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
	return printEvents(ctx, cl, f.namespace, "restore", name, restoreEventObjects(r, pvrs), out)
}

// restoreEventObjects keys the Restore and its PodVolumeRestores by "Kind/name", as Events refer to them.
func restoreEventObjects(r *v1.Restore, pvrs []v1.PodVolumeRestore) map[string]eventObject {
	objects := map[string]eventObject{"Restore/" + r.Name: {r.UID, "restore"}}
	for i := range pvrs {
		objects["PodVolumeRestore/"+pvrs[i].Name] = eventObject{pvrs[i].UID, "pvr " + restoreVolumeName(&pvrs[i])}
	}
	return objects
}

// restoreEvents picks the Events about the Restore or one of its PodVolumeRestores, oldest first.
func restoreEvents(r *v1.Restore, pvrs []v1.PodVolumeRestore, events []corev1.Event) []eventRow {
	return eventsAbout(restoreEventObjects(r, pvrs), events)
}
