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

// newRestoreCmd groups the `straddle restore` commands. Restores live in the install namespace, as Backups
// do, so they share backupFlags.
func newRestoreCmd() *cobra.Command {
	f := &backupFlags{}
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a backup's resources and pod volumes through the cluster: create, get, describe, logs",
	}
	f.register(cmd)
	cmd.AddCommand(newRestoreCreateCmd(f), newRestoreGetCmd(f), newRestoreDescribeCmd(f), newRestoreLogsCmd(f))
	return cmd
}

// getRestore reads one Restore, turning "not found" into a sentence that says where it looked.
func getRestore(ctx context.Context, cl client.Client, namespace, name string) (*v1.Restore, error) {
	var r v1.Restore
	err := cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &r)
	if apierrors.IsNotFound(err) {
		return nil, &restoreNotFoundError{namespace: namespace, name: name}
	}
	if err != nil {
		return nil, fmt.Errorf("read restore %s/%s: %w", namespace, name, installHint(err))
	}
	return &r, nil
}

// listVolumeRestores lists a restore's PodVolumeRestores (labelled with its name by the controller), sorted
// by namespace, pod and volume so every view shows them in the same order.
func listVolumeRestores(ctx context.Context, cl client.Client, r *v1.Restore) ([]v1.PodVolumeRestore, error) {
	var list v1.PodVolumeRestoreList
	if err := cl.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingLabels{v1.RestoreLabel: r.Name}); err != nil {
		return nil, fmt.Errorf("list the volume restores of restore %s/%s: %w", r.Namespace, r.Name, installHint(err))
	}
	pvrs := ownVolumeRestores(r, list.Items)
	sort.Slice(pvrs, func(i, j int) bool { return restoreVolumeName(&pvrs[i]) < restoreVolumeName(&pvrs[j]) })
	return pvrs, nil
}

// ownVolumeRestores drops the PodVolumeRestores owned by another Restore of the same name: one deleted and
// created again, whose volume restores the garbage collector has not removed yet.
func ownVolumeRestores(r *v1.Restore, pvrs []v1.PodVolumeRestore) []v1.PodVolumeRestore {
	own := pvrs[:0]
	for _, p := range pvrs {
		ok := true
		for _, ref := range p.OwnerReferences {
			if ref.Kind == "Restore" && ref.Name == r.Name && r.UID != "" && ref.UID != r.UID {
				ok = false
			}
		}
		if ok {
			own = append(own, p)
		}
	}
	return own
}

// restoreVolumeName names a restored pod volume as a user finds it: namespace/pod/volume of the NEW pod,
// after any namespace mapping.
func restoreVolumeName(p *v1.PodVolumeRestore) string {
	return p.Spec.Pod.Namespace + "/" + p.Spec.Pod.Name + "/" + p.Spec.Volume
}

// restorePhaseOf reads a Restore's phase; a Restore the controller has not seen yet has none and is New.
func restorePhaseOf(r *v1.Restore) v1.Phase {
	if r.Status.Phase == "" {
		return v1.PhaseNew
	}
	return r.Status.Phase
}

func volumeRestorePhaseOf(p *v1.PodVolumeRestore) v1.VolumePhase {
	if p.Status.Phase == "" {
		return v1.VolumePhaseNew
	}
	return p.Status.Phase
}

// restoreVolumesCell is "done/total", with the failed ones counted when there are any.
func restoreVolumesCell(s *v1.RestoreStatus) string {
	return volumesCell(&v1.BackupStatus{VolumesTotal: s.VolumesTotal, VolumesCompleted: s.VolumesCompleted, VolumesFailed: s.VolumesFailed})
}

// restoreVolumesText says the same as restoreVolumesCell in words, for headers and log lines.
func restoreVolumesText(s *v1.RestoreStatus) string {
	return volumesText(&v1.BackupStatus{VolumesTotal: s.VolumesTotal, VolumesCompleted: s.VolumesCompleted, VolumesFailed: s.VolumesFailed})
}

// restoreNotFoundError says a Restore is not there, and where it was looked for.
type restoreNotFoundError struct{ namespace, name string }

func (e *restoreNotFoundError) Error() string {
	return fmt.Sprintf("restore %q not found in namespace %s (straddle restore get lists them)", e.name, e.namespace)
}
