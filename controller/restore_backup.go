package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/controller/resources"
	"github.com/straddle-io/straddle/repo/storage"
)

// storedBackup is a backup as its storage location holds it: all a restore reads, never the cluster's copy
// (the cluster may be new).
type storedBackup struct {
	Location         *v1.BackupStorageLocation
	Metadata         BackupMetadata
	PodVolumeBackups []v1.PodVolumeBackup
	Entries          []resources.Entry
}

// findBackup finds the storage location holding backup name: the one its Backup object names if the cluster
// has it, else the first location of the install namespace (by name) with backups/<name>/backup.json.
// problem says why the restore cannot go on (a message for its status); err is a failure worth retrying.
func (r *RestoreReconciler) findBackup(ctx context.Context, name string) (loc *v1.BackupStorageLocation, problem string, err error) {
	var b v1.Backup
	// Read past the cache: a Backup created a moment before the Restore may not be in it yet, and a miss here
	// sends the restore to search storage, where an unfinished backup is not found at all.
	err = r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, &b)
	switch {
	case err == nil:
		if b.Status.Phase != v1.PhaseCompleted && b.Status.Phase != v1.PhasePartiallyFailed {
			return nil, fmt.Sprintf("backup %s is %s: only a Completed or PartiallyFailed backup can be restored", name, phaseOrNew(b.Status.Phase)), nil
		}
		loc = &v1.BackupStorageLocation{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: b.Spec.StorageLocation}, loc)
		if apierrors.IsNotFound(err) {
			return nil, fmt.Sprintf("storage location %q of backup %s does not exist in namespace %s", b.Spec.StorageLocation, name, r.Namespace), nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read storage location %s: %w", b.Spec.StorageLocation, err)
		}
		return loc, "", nil
	case !apierrors.IsNotFound(err):
		return nil, "", fmt.Errorf("read backup %s: %w", name, err)
	}
	// A cluster pointed at a bucket another cluster wrote has no Backup objects: look in the locations.
	var list v1.BackupStorageLocationList
	if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace)); err != nil {
		return nil, "", fmt.Errorf("list storage locations: %w", err)
	}
	slices.SortFunc(list.Items, func(a, b v1.BackupStorageLocation) int { return strings.Compare(a.Name, b.Name) })
	var looked, trouble []string
	for i := range list.Items {
		l := &list.Items[i]
		looked = append(looked, l.Name)
		be, err := bsl.OpenStorage(ctx, r.APIReader, l, bsl.BackupPath(name))
		if err != nil {
			trouble = append(trouble, fmt.Sprintf("%s: %v", l.Name, err))
			continue
		}
		_, err = be.Stat(ctx, BackupMetadataName)
		if err == nil {
			return l, "", nil
		}
		if !errors.Is(err, storage.ErrNotFound) {
			trouble = append(trouble, fmt.Sprintf("%s: %v", l.Name, err))
		}
	}
	problem = fmt.Sprintf("backup %s not found: no Backup object in namespace %s, and no storage location there holds %s/%s (looked in %s)",
		name, r.Namespace, bsl.BackupPath(name), BackupMetadataName, strings.Join(looked, ", "))
	if len(looked) == 0 {
		problem = fmt.Sprintf("backup %s not found: no Backup object and no storage location in namespace %s", name, r.Namespace)
	}
	if len(trouble) > 0 {
		problem += "; locations that could not be read: " + strings.Join(trouble, "; ")
	}
	return nil, problem, nil
}

func phaseOrNew(p v1.Phase) v1.Phase {
	if p == "" {
		return v1.PhaseNew
	}
	return p
}

// readBackup reads backup.json, podvolumebackups.json and resources.tar.zst of backup name from loc. problem
// says why the stored backup cannot be restored; err is a failure to read, worth retrying.
func (r *RestoreReconciler) readBackup(ctx context.Context, loc *v1.BackupStorageLocation, name string) (sb *storedBackup, problem string, err error) {
	be, err := bsl.OpenStorage(ctx, r.APIReader, loc, bsl.BackupPath(name))
	if err != nil {
		return nil, "", fmt.Errorf("open storage location %s: %w", loc.Name, err)
	}
	sb = &storedBackup{Location: loc}
	raw, err := storage.ReadAll(ctx, be, BackupMetadataName)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Sprintf("backup %s has no %s in storage location %s (%s): it never finished, or was deleted", name, BackupMetadataName, loc.Name, be.Location()), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s of backup %s: %w", BackupMetadataName, name, err)
	}
	if err := json.Unmarshal(raw, &sb.Metadata); err != nil || sb.Metadata.Backup == nil {
		return nil, fmt.Sprintf("backup %s: %s in storage location %s is unreadable: %v", name, BackupMetadataName, loc.Name, err), nil
	}
	if v := sb.Metadata.FormatVersion; v > BackupMetadataFormat {
		return nil, fmt.Sprintf("backup %s: %s has format version %d, newer than this controller reads (%d)", name, BackupMetadataName, v, BackupMetadataFormat), nil
	}
	if p := sb.Metadata.Backup.Status.Phase; p != v1.PhaseCompleted && p != v1.PhasePartiallyFailed {
		return nil, fmt.Sprintf("backup %s is %s: only a Completed or PartiallyFailed backup can be restored", name, phaseOrNew(p)), nil
	}
	raw, err = storage.ReadAll(ctx, be, PodVolumeBackupsName)
	if err != nil {
		return nil, fmt.Sprintf("backup %s: read %s: %v", name, PodVolumeBackupsName, err), nil
	}
	var list v1.PodVolumeBackupList
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Sprintf("backup %s: %s is unreadable: %v", name, PodVolumeBackupsName, err), nil
	}
	sb.PodVolumeBackups = list.Items
	raw, err = storage.ReadAll(ctx, be, ResourcesArchiveName)
	if err != nil {
		return nil, fmt.Sprintf("backup %s: read %s: %v", name, ResourcesArchiveName, err), nil
	}
	if sb.Entries, err = resources.Read(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Sprintf("backup %s: %s is unreadable: %v", name, ResourcesArchiveName, err), nil
	}
	return sb, "", nil
}
