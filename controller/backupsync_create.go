package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/storage"
)

// syncSource is a stored backup as the sync reads it: backup.json and podvolumebackups.json.
type syncSource struct {
	Metadata         BackupMetadata
	PodVolumeBackups []v1.PodVolumeBackup
}

// readSyncSource reads backup name from its folder dir in be. problem says why it cannot be synced (it will
// not change by retrying soon); err is a failure to read, tried again next period.
func readSyncSource(ctx context.Context, be storage.Backend, dir, name string) (src *syncSource, problem string, err error) {
	raw, err := storage.ReadAll(ctx, be, dir+"/"+BackupMetadataName)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, "its backup.json is gone (deleted since the listing)", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s of backup %s: %w", BackupMetadataName, name, err)
	}
	src = &syncSource{}
	md := &src.Metadata
	if err := json.Unmarshal(raw, md); err != nil || md.Backup == nil {
		return nil, fmt.Sprintf("%s is unreadable: %v", BackupMetadataName, err), nil
	}
	if md.FormatVersion < 1 || md.FormatVersion > BackupMetadataFormat {
		return nil, fmt.Sprintf("%s has format version %d; this controller reads 1 to %d", BackupMetadataName, md.FormatVersion, BackupMetadataFormat), nil
	}
	if md.Backup.Name != name {
		// Its snapshots are tagged with the name inside; a Backup under the folder's name would forget the
		// wrong ones when deleted.
		return nil, fmt.Sprintf("%s describes backup %q, not %q", BackupMetadataName, md.Backup.Name, name), nil
	}
	switch md.Backup.Status.Phase {
	case v1.PhaseCompleted, v1.PhasePartiallyFailed, v1.PhaseFailed:
	default:
		return nil, fmt.Sprintf("its phase %q is not terminal", md.Backup.Status.Phase), nil
	}
	raw, err = storage.ReadAll(ctx, be, dir+"/"+PodVolumeBackupsName)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Sprintf("it has no %s", PodVolumeBackupsName), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s of backup %s: %w", PodVolumeBackupsName, name, err)
	}
	var list v1.PodVolumeBackupList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Sprintf("%s is unreadable: %v", PodVolumeBackupsName, err), nil
	}
	src.PodVolumeBackups = list.Items
	return src, "", nil
}

// create makes the Backup of a stored backup (be is the location's root) (or finishes one whose creation stopped half-way: existing) in
// three steps: the Backup without a status, its PodVolumeBackups, then the Backup's status. Until the last
// step the Backup has no phase, so a restore does not take it and the next sync resumes it.
func (s *BackupSyncer) create(ctx context.Context, loc *v1.BackupStorageLocation, be storage.Backend, name string, existing *v1.Backup) error {
	src, problem, err := readSyncSource(ctx, be, bsl.BackupPath(name), name)
	if err != nil {
		return err
	}
	if problem != "" {
		s.skip(ctx, loc, name, problem)
		return nil
	}
	b := existing
	if b == nil {
		b = syncedBackup(src.Metadata.Backup, loc, s.Namespace)
		if err := s.Client.Create(ctx, b); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Created meanwhile (by a user, or this cluster's own backup): not ours to fill.
				return nil
			}
			return fmt.Errorf("create backup %s: %w", name, err)
		}
	}
	for i := range src.PodVolumeBackups {
		if err := s.createPodVolumeBackup(ctx, loc, b, &src.PodVolumeBackups[i]); err != nil {
			return err
		}
	}
	b.Status = storedStatus(&src.Metadata)
	if err := s.Client.Status().Update(ctx, b); err != nil {
		// A conflict or a failure leaves the Backup without a phase: the next sync resumes it.
		return client.IgnoreNotFound(ignoreConflict(err))
	}
	s.Metrics.synced(syncCreated)
	s.Events.Eventf(b, nil, corev1.EventTypeNormal, "Synced", "Sync", "backup %s found in storage location %s: created with %d volumes, phase %s",
		name, loc.Name, len(src.PodVolumeBackups), b.Status.Phase)
	ctrl.LoggerFrom(ctx).Info("created a backup found in storage", "backup", name, "location", loc.Name, "volumes", len(src.PodVolumeBackups))
	return nil
}

// syncedBackup is the Backup made from a stored one: its labels (a Schedule's among them) and spec, the
// synced annotation that keeps the Backup reconciler from running it, and the finalizer that removes its
// data when it is deleted. Its storage location is this one, whatever the writing cluster called it.
func syncedBackup(stored *v1.Backup, loc *v1.BackupStorageLocation, namespace string) *v1.Backup {
	b := &v1.Backup{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   namespace,
			Name:        stored.Name,
			Labels:      maps.Clone(stored.Labels),
			Annotations: map[string]string{v1.SyncedFromAnnotation: loc.Name},
			Finalizers:  []string{BackupFinalizer},
		},
		Spec: *stored.Spec.DeepCopy(),
	}
	b.Spec.StorageLocation = loc.Name
	return b
}

// storedStatus is the status backup.json records, with the lists it keeps beside the Backup filled in when
// the Backup's own status lacks them.
func storedStatus(md *BackupMetadata) v1.BackupStatus {
	st := *md.Backup.Status.DeepCopy()
	if len(st.SkippedVolumes) == 0 {
		st.SkippedVolumes = md.SkippedVolumes
	}
	if len(st.Warnings) == 0 {
		st.Warnings = md.Warnings
	}
	if len(st.Resources) == 0 {
		st.Resources = md.Resources
	}
	return st
}

// createPodVolumeBackup records one stored volume result under b, with its stored status. It carries no node
// label, so no node-agent's cache ever holds it, and the synced annotation, which node-agents also refuse.
func (s *BackupSyncer) createPodVolumeBackup(ctx context.Context, loc *v1.BackupStorageLocation, b *v1.Backup, stored *v1.PodVolumeBackup) error {
	pvb := syncedPodVolumeBackup(stored, loc, b)
	if err := controllerutil.SetControllerReference(b, pvb, s.Client.Scheme()); err != nil {
		return fmt.Errorf("own PodVolumeBackup %s: %w", pvb.Name, err)
	}
	err := s.Client.Create(ctx, pvb)
	if apierrors.IsAlreadyExists(err) {
		// Created by an earlier, interrupted sync: fill its status if that step was lost.
		if err := s.APIReader.Get(ctx, client.ObjectKeyFromObject(pvb), pvb); err != nil {
			return client.IgnoreNotFound(err)
		}
		if !metav1.IsControlledBy(pvb, b) || pvb.Status.Phase != "" {
			return nil
		}
	} else if err != nil {
		return fmt.Errorf("create PodVolumeBackup %s of backup %s: %w", pvb.Name, b.Name, err)
	}
	pvb.Status = *stored.Status.DeepCopy()
	if err := s.Client.Status().Update(ctx, pvb); err != nil {
		return fmt.Errorf("set status of PodVolumeBackup %s of backup %s: %w", pvb.Name, b.Name, err)
	}
	return nil
}

// syncedPodVolumeBackup is the PodVolumeBackup made from a stored one: its name, spec and labels, without the
// node label, plus the backup label and the synced annotation.
func syncedPodVolumeBackup(stored *v1.PodVolumeBackup, loc *v1.BackupStorageLocation, b *v1.Backup) *v1.PodVolumeBackup {
	labels := maps.Clone(stored.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	delete(labels, v1.NodeLabel)
	labels[v1.BackupLabel] = b.Name
	pvb := &v1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   b.Namespace,
			Name:        stored.Name,
			Labels:      labels,
			Annotations: map[string]string{v1.SyncedFromAnnotation: loc.Name},
		},
		Spec: *stored.Spec.DeepCopy(),
	}
	pvb.Spec.StorageLocation = loc.Name
	return pvb
}

// ignoreConflict treats a conflict as "someone else moved it": the next sync looks again with fresh data.
func ignoreConflict(err error) error {
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}
