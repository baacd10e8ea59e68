package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/controller/resources"
	"github.com/straddle-io/straddle/repo/storage"
)

// Objects in a backup's folder, backups/<name>/ in its storage location (contract: a restore, and a new
// cluster pointed at the same bucket, read them). backup.json is written last, so its presence means the
// folder is whole.
const (
	BackupMetadataName   = "backup.json"
	PodVolumeBackupsName = "podvolumebackups.json"
	ResourcesArchiveName = resources.ArchiveName
)

// BackupMetadataFormat is the version of backup.json's layout.
const BackupMetadataFormat = 1

// BackupMetadata is backup.json.
type BackupMetadata struct {
	FormatVersion  int                `json:"formatVersion"`
	Backup         *v1.Backup         `json:"backup"`
	SkippedVolumes []v1.SkippedVolume `json:"skippedVolumes"`
	Warnings       []string           `json:"warnings"`
	Resources      []v1.ResourceCount `json:"resources"`
}

// finish writes the backup's resources and metadata to its storage location and then, only then, records the
// terminal phase: a Completed backup is always restorable from storage alone.
func (r *BackupReconciler) finish(ctx context.Context, b *v1.Backup, loc *v1.BackupStorageLocation, pvbs []v1.PodVolumeBackup) (ctrl.Result, error) {
	phase := v1.PhaseCompleted
	switch {
	case b.Status.VolumesFailed > 0 && b.Status.VolumesFailed == b.Status.VolumesTotal:
		phase = v1.PhaseFailed
	case b.Status.VolumesCompleted == 0 && meta.IsStatusConditionTrue(b.Status.Conditions, ConditionTimedOut):
		// Timed out before a single volume was even chosen: nothing to restore.
		phase = v1.PhaseFailed
	case b.Status.VolumesFailed > 0:
		phase = v1.PhasePartiallyFailed
	}
	if err := r.writeBackup(ctx, b, loc, pvbs, phase); err != nil {
		// Storage that fails now may work on the retry's backoff; the backup stays InProgress meanwhile.
		r.Events.Eventf(b, nil, corev1.EventTypeWarning, "StoreFailed", "StoreMetadata", "could not store the backup's resources and metadata (will retry): %v", err)
		return ctrl.Result{}, err
	}
	if err := r.Client.Status().Update(ctx, b); err != nil {
		// The folder is written again on the next try, the same but for timestamps: harmless.
		return r.requeueOnConflict(err, "record completion of backup %s", b.Name)
	}
	eventType := corev1.EventTypeNormal
	if phase != v1.PhaseCompleted {
		eventType = corev1.EventTypeWarning
	}
	r.Events.Eventf(b, nil, eventType, string(phase), "Backup", "backup %s: %d of %d volumes completed, %d failed; %d kinds of resources stored",
		phase, b.Status.VolumesCompleted, b.Status.VolumesTotal, b.Status.VolumesFailed, len(b.Status.Resources))
	r.announceSkips(b)
	r.Metrics.backupEnded(b)
	for i := range pvbs {
		r.reported.Delete(pvbs[i].UID)
	}
	return r.untilExpiry(b), nil
}

// writeBackup stores resources.tar.zst, podvolumebackups.json and backup.json, and sets b's final status
// (which backup.json holds). The resources are all of the selected namespaces': the label selector chooses
// pods for their volumes, but a restore needs the Services, Secrets and claims around them too.
func (r *BackupReconciler) writeBackup(ctx context.Context, b *v1.Backup, loc *v1.BackupStorageLocation, pvbs []v1.PodVolumeBackup, phase v1.Phase) error {
	be, err := bsl.OpenStorage(ctx, r.APIReader, loc, bsl.BackupPath(b.Name))
	if err != nil {
		return fmt.Errorf("open storage location %s: %w", loc.Name, err)
	}
	namespaces, err := r.selectedNamespaces(ctx, b)
	if err != nil {
		return err
	}
	var archive bytes.Buffer
	res, err := r.Resources.Write(ctx, namespaces, &archive)
	if err != nil {
		return fmt.Errorf("collect resources: %w", err)
	}
	if err := storage.PutBytes(ctx, be, ResourcesArchiveName, archive.Bytes()); err != nil {
		return fmt.Errorf("store %s in %s: %w", ResourcesArchiveName, be.Location(), err)
	}
	list := v1.PodVolumeBackupList{TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "PodVolumeBackupList"}, Items: pvbs}
	for i := range list.Items {
		list.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "PodVolumeBackup"}
		list.Items[i].ManagedFields = nil
	}
	if err := putJSON(ctx, be, PodVolumeBackupsName, list); err != nil {
		return err
	}
	now := metav1.NewTime(r.Clock.Now())
	b.Status.Phase = phase
	b.Status.Resources = res.Counts
	b.Status.Warnings = append(b.Status.Warnings, hookWarnings(b.Status.Hooks)...)
	b.Status.Warnings = append(b.Status.Warnings, res.Warnings...)
	b.Status.CompletionTimestamp = &now
	doc := b.DeepCopy()
	doc.TypeMeta = metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "Backup"}
	doc.ManagedFields = nil
	md := BackupMetadata{FormatVersion: BackupMetadataFormat, Backup: doc, SkippedVolumes: b.Status.SkippedVolumes, Warnings: b.Status.Warnings, Resources: res.Counts}
	return putJSON(ctx, be, BackupMetadataName, md)
}

func putJSON(ctx context.Context, be storage.Backend, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	if err := storage.PutBytes(ctx, be, name, data); err != nil {
		return fmt.Errorf("store %s in %s: %w", name, be.Location(), err)
	}
	return nil
}
