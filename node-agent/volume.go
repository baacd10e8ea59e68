package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/node-agent/hostpods"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/snapshot"
)

// maxWarnings is how many warnings a PodVolumeBackup's status lists; the rest are counted in one line, so a
// volume of a million unreadable files does not outgrow the object.
const maxWarnings = 20

// volumeResult is what a finished volume backup reports in its PodVolumeBackup's status.
type volumeResult struct {
	SnapshotID string
	Stats      v1.VolumeStats
	Progress   v1.Progress
	Warnings   []string
}

// backup finds the volume of pvb and backs it up into the repository of the pod's namespace, under a shared
// lock, reporting progress readings to progress.
func (r *PodVolumeBackupReconciler) backup(ctx context.Context, pvb *v1.PodVolumeBackup, progress func(backup.Progress)) (*volumeResult, error) {
	spec := pvb.Spec
	if _, err := backup.NewExcluder(spec.ExcludePatterns); err != nil {
		return nil, fmt.Errorf("%w (from the pod's backup.straddle.io/exclude-patterns annotation)", err)
	}
	dir, err := r.volumeDir(ctx, pvb)
	if errors.Is(err, hostpods.ErrNotFound) {
		return nil, r.whyMissing(ctx, pvb, err)
	}
	if err != nil {
		return nil, err
	}
	var loc v1.BackupStorageLocation
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: spec.StorageLocation}, &loc); err != nil {
		return nil, fmt.Errorf("read storage location %s/%s: %w", r.Namespace, spec.StorageLocation, err)
	}
	rp, err := bsl.OpenRepository(ctx, r.APIReader, &loc, spec.Pod.Namespace, false)
	if err != nil {
		return nil, err
	}
	defer rp.Close()
	rp.SetIndexPaging(r.IndexPaging)
	where := rp.Backend().Location()
	var res *volumeResult
	err = lock.WithLock(ctx, rp, lock.Shared, "backup", lock.Options{WaitTimeout: r.LockWait, Host: r.NodeName}, func(ctx context.Context) error {
		// The index is loaded under the lock: prune relies on every reader of the index holding one.
		if err := rp.LoadIndex(ctx); err != nil {
			return fmt.Errorf("load the index of the repository at %s: %w", where, err)
		}
		parent, warnings, err := findParent(ctx, rp, spec.ParentSnapshotID)
		if err != nil {
			return err
		}
		out, err := backup.Run(ctx, rp, backup.Options{
			Path:     dir,
			Host:     spec.Pod.Namespace + "/" + spec.Pod.Name,
			Tags:     spec.Tags,
			Excludes: spec.ExcludePatterns,
			Parent:   parent,
			Progress: progress,
			// The reporter writes the newest reading every ProgressInterval; readings need not come more often.
			ProgressInterval: min(time.Second, r.ProgressInterval),
			Writer:           repo.WriterOptions{CheckpointInterval: r.CheckpointInterval},
		})
		if err != nil {
			return err
		}
		res = newVolumeResult(out, warnings)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("back up %s into the repository at %s: %w", dir, where, err)
	}
	return res, nil
}

// volumeDir resolves where pvb's volume lives on this node: the pod's UID (from the spec, else the pod),
// and for a claim its PersistentVolume's name, which the kubelet names the folder after.
func (r *PodVolumeBackupReconciler) volumeDir(ctx context.Context, pvb *v1.PodVolumeBackup) (string, error) {
	spec := pvb.Spec
	v := hostpods.Volume{PodNamespace: spec.Pod.Namespace, PodName: spec.Pod.Name, PodUID: spec.Pod.UID, Name: spec.Volume}
	if v.PodUID == "" {
		var pod corev1.Pod
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: spec.Pod.Namespace, Name: spec.Pod.Name}, &pod); err != nil {
			return "", fmt.Errorf("read pod %s/%s: %w", spec.Pod.Namespace, spec.Pod.Name, err)
		}
		v.PodUID = string(pod.UID)
	}
	if spec.PVC != "" {
		var pvc corev1.PersistentVolumeClaim
		if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: spec.Pod.Namespace, Name: spec.PVC}, &pvc); err != nil {
			return "", fmt.Errorf("read PersistentVolumeClaim %s/%s of %s: %w", spec.Pod.Namespace, spec.PVC, v, err)
		}
		if pvc.Spec.VolumeName == "" {
			return "", fmt.Errorf("PersistentVolumeClaim %s/%s of %s is not bound to a PersistentVolume", spec.Pod.Namespace, spec.PVC, v)
		}
		v.PVName = pvc.Spec.VolumeName
	}
	return hostpods.Find(r.HostPodsDir, v)
}

// whyMissing says why pvb's volume folder is not on this node: its pod was deleted (or replaced by another
// of the same name); or, for a backup an agent restart interrupted (it found the folder before), the volume is
// gone. Otherwise notFound stands as it is: a wrong --host-pods-dir looks the same, and its message says so.
func (r *PodVolumeBackupReconciler) whyMissing(ctx context.Context, pvb *v1.PodVolumeBackup, notFound error) error {
	ref := pvb.Spec.Pod
	var pod corev1.Pod
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &pod)
	if apierrors.IsNotFound(err) || (err == nil && ((ref.UID != "" && string(pod.UID) != ref.UID) || pod.DeletionTimestamp != nil)) {
		return fmt.Errorf("pod %s/%s was deleted", ref.Namespace, ref.Name)
	}
	if err == nil && resumed(pvb) {
		return fmt.Errorf("volume %s of pod %s/%s is gone: %w", pvb.Spec.Volume, ref.Namespace, ref.Name, notFound)
	}
	return notFound
}

// resumed reports whether pvb is being run again after a node-agent restart interrupted it.
func resumed(pvb *v1.PodVolumeBackup) bool {
	n, err := strconv.Atoi(pvb.Annotations[AttemptsAnnotation])
	return err == nil && n > 1
}

// findParent loads the parent snapshot the controller chose. One that is gone (forgotten and pruned since)
// is a warning and a full read of the volume, not a failure.
func findParent(ctx context.Context, rp *repo.Repository, ref string) (*snapshot.Snapshot, []string, error) {
	if ref == "" {
		return nil, nil, nil
	}
	s, err := rp.FindSnapshot(ctx, ref, repo.Filter{})
	switch {
	case errors.Is(err, repo.ErrNotFound):
		return nil, []string{fmt.Sprintf("parent snapshot %s is not in the repository; every file was read", ref)}, nil
	case err != nil:
		return nil, nil, fmt.Errorf("load parent snapshot %s: %w", ref, err)
	}
	return s, nil, nil
}

func newVolumeResult(out *backup.Result, warnings []string) *volumeResult {
	s := out.Summary
	files := s.FilesNew + s.FilesChanged + s.FilesUnmodified
	res := &volumeResult{
		SnapshotID: out.Snapshot.ID.String(),
		Stats: v1.VolumeStats{FilesNew: int64(s.FilesNew), FilesChanged: int64(s.FilesChanged), FilesUnmodified: int64(s.FilesUnmodified),
			BytesRead: int64(s.BytesRead), BytesAdded: int64(s.BytesAdded), BytesStored: int64(s.BytesStored)},
		Progress: v1.Progress{BytesDone: int64(s.BytesTotal), BytesTotal: int64(s.BytesTotal), FilesDone: int64(files), FilesTotal: int64(files)},
		Warnings: warnings,
	}
	for i, w := range out.Warnings {
		if len(res.Warnings) == maxWarnings {
			res.Warnings = append(res.Warnings, fmt.Sprintf("and %d more files or directories that could not be read", len(out.Warnings)-i))
			break
		}
		res.Warnings = append(res.Warnings, w.String())
	}
	return res
}
