package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/forget"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
)

// deleteVolumeWait is how long a deleted backup waits for its running volumes to end before removing its
// snapshots.
const deleteVolumeWait = 10 * time.Minute

// lockWait is how long a deletion waits for a repository an exclusive lock (prune) holds before it retries
// on the controller's backoff.
const lockWait = time.Minute

// reconcileDelete removes a deleted backup's snapshots from each namespace's repository and its folder from
// the storage location, then lets the Backup go. Its PodVolumeBackups go with it by owner reference. The data
// the snapshots referenced stays until maintenance prunes it.
func (r *BackupReconciler) reconcileDelete(ctx context.Context, b *v1.Backup) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(b, BackupFinalizer) {
		return ctrl.Result{}, nil
	}
	if b.Status.Phase != v1.PhaseDeleting {
		b.Status.Phase = v1.PhaseDeleting
		if err := r.Client.Status().Update(ctx, b); err != nil {
			return r.requeueOnConflict(err, "mark backup %s deleting", b.Name)
		}
		r.Events.Eventf(b, nil, corev1.EventTypeNormal, "Deleting", "Delete", "removing the backup's snapshots and stored objects")
		return ctrl.Result{}, nil
	}
	if wait, err := r.volumesStillRunning(ctx, b); err != nil || wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, err
	}
	loc, problem, err := r.location(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != "" {
		// Without its location there is nothing this controller can remove; keeping the Backup forever
		// would not bring the location back.
		r.Events.Eventf(b, nil, corev1.EventTypeWarning, "DeleteIncomplete", "Delete", "%s: its snapshots and stored objects, if any, were left in place", problem)
	} else if err := r.removeBackupData(ctx, b, loc); err != nil {
		r.Events.Eventf(b, nil, corev1.EventTypeWarning, "DeleteFailed", "Delete", "could not remove the backup's data (will retry): %v", err)
		return ctrl.Result{}, err
	}
	controllerutil.RemoveFinalizer(b, BackupFinalizer)
	return r.requeueOnConflict(r.Client.Update(ctx, b), "remove the finalizer of backup %s", b.Name)
}

// volumesStillRunning says how soon to look again when the backup's PodVolumeBackups are still running: a
// snapshot saved after its backup's snapshots were forgotten would stay in the repository for good. A
// node-agent that never finishes must not keep the Backup forever, so the wait ends deleteVolumeWait after
// the deletion.
func (r *BackupReconciler) volumesStillRunning(ctx context.Context, b *v1.Backup) (time.Duration, error) {
	left := b.DeletionTimestamp.Add(deleteVolumeWait).Sub(r.Clock.Now())
	if left <= 0 {
		return 0, nil
	}
	pvbs, err := r.podVolumeBackups(ctx, r.APIReader, b)
	if err != nil {
		return 0, err
	}
	for _, pvb := range pvbs {
		if !volumeTerminal(pvb.Status.Phase) {
			// PodVolumeBackup changes wake this backup through the watch; the requeue bounds the wait.
			return left, nil
		}
	}
	return 0, nil
}

// removeBackupData forgets the backup's snapshots in every namespace it has volumes of, then deletes
// backups/<name>/.
func (r *BackupReconciler) removeBackupData(ctx context.Context, b *v1.Backup, loc *v1.BackupStorageLocation) error {
	be, err := bsl.OpenStorage(ctx, r.APIReader, loc, bsl.BackupPath(b.Name))
	if err != nil {
		return fmt.Errorf("open storage location %s: %w", loc.Name, err)
	}
	namespaces, err := r.backupNamespaces(ctx, b, be)
	if err != nil {
		return err
	}
	for _, ns := range namespaces {
		if err := r.forgetSnapshots(ctx, b.Name, loc, ns); err != nil {
			return err
		}
	}
	var names []string
	if err := be.List(ctx, "", func(info storage.Info) error {
		names = append(names, info.Name)
		return nil
	}); err != nil {
		return fmt.Errorf("list %s: %w", be.Location(), err)
	}
	// backup.json first: a folder without it reads as incomplete, never as a whole backup missing parts.
	slices.SortStableFunc(names, func(a, b string) int {
		switch {
		case a == BackupMetadataName:
			return -1
		case b == BackupMetadataName:
			return 1
		}
		return 0
	})
	for _, name := range names {
		if err := be.Delete(ctx, name); err != nil {
			return fmt.Errorf("delete %s from %s: %w", name, be.Location(), err)
		}
	}
	return nil
}

// backupNamespaces lists the namespaces whose repositories may hold the backup's snapshots: those of its
// PodVolumeBackups, and those recorded in podvolumebackups.json (the PodVolumeBackups may already be gone).
// Every one of them had its repository created before its PodVolumeBackup was.
func (r *BackupReconciler) backupNamespaces(ctx context.Context, b *v1.Backup, be storage.Backend) ([]string, error) {
	pvbs, err := r.podVolumeBackups(ctx, r.APIReader, b)
	if err != nil {
		return nil, err
	}
	data, err := storage.ReadAll(ctx, be, PodVolumeBackupsName)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("read %s from %s: %w", PodVolumeBackupsName, be.Location(), err)
	default:
		var stored v1.PodVolumeBackupList
		if err := json.Unmarshal(data, &stored); err != nil {
			return nil, fmt.Errorf("read %s from %s: %w", PodVolumeBackupsName, be.Location(), err)
		}
		pvbs = append(pvbs, stored.Items...)
	}
	var out []string
	for _, pvb := range pvbs {
		if !slices.Contains(out, pvb.Spec.Pod.Namespace) {
			out = append(out, pvb.Spec.Pod.Namespace)
		}
	}
	slices.Sort(out)
	return out, nil
}

// forgetSnapshots removes the snapshots tagged with the backup's name from namespace's repository, under a
// shared lock as `straddle repo forget` takes: safe beside running backups, never inside a prune's exclusive
// phase.
func (r *BackupReconciler) forgetSnapshots(ctx context.Context, backup string, loc *v1.BackupStorageLocation, namespace string) error {
	rp, err := bsl.OpenRepository(ctx, r.APIReader, loc, namespace, false)
	if errors.Is(err, repo.ErrNoRepository) {
		// Removed already (a backup synced from storage another cluster cleaned up): nothing to forget.
		return nil
	}
	if err != nil {
		return err
	}
	err = lock.WithLock(ctx, rp, lock.Shared, "forget", lock.Options{WaitTimeout: lockWait}, func(ctx context.Context) error {
		snaps, err := rp.ListSnapshots(ctx)
		if err != nil {
			return err
		}
		f := repo.Filter{Tags: map[string]string{bsl.TagBackup: backup}}
		snaps = slices.DeleteFunc(snaps, func(s *snapshot.Snapshot) bool { return !f.Match(s) })
		return forget.Remove(ctx, rp, snaps)
	})
	if err != nil {
		return fmt.Errorf("forget the snapshots of backup %s in the repository of namespace %s: %w", backup, namespace, err)
	}
	return nil
}
