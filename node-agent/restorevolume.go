package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/node-agent/hostpods"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/restore"
)

// MarkerDir is the folder at a restored volume's root holding the done markers the restore helper waits for
// (DESIGN §8); the marker of a restore is MarkerDir/<restore UID>.
const MarkerDir = ".straddle"

// restoreResult is what a finished volume restore reports in its PodVolumeRestore's status.
type restoreResult struct {
	Progress v1.Progress
	Warnings []string
}

// message says what of the metadata could not be restored; the data itself was.
func (res *restoreResult) message() string {
	if len(res.Warnings) == 0 {
		return ""
	}
	return fmt.Sprintf("restored, with %d warnings: %s", len(res.Warnings), strings.Join(res.Warnings, "; "))
}

// folderMissingError means the volume's folder is not on this node yet: the pod has not started.
type folderMissingError struct{ err error }

func (e *folderMissingError) Error() string { return e.err.Error() }
func (e *folderMissingError) Unwrap() error { return e.err }

// volumeDir resolves where pvr's volume lives on this node (restoreVolumeDir).
func (r *PodVolumeRestoreReconciler) volumeDir(ctx context.Context, pvr *v1.PodVolumeRestore) (string, error) {
	return restoreVolumeDir(ctx, r.APIReader, r.HostPodsDir, pvr)
}

// restoreVolumeDir resolves where pvr's volume lives under hostPodsDir. The PodVolumeRestore names the pod
// and the volume; for a claim the kubelet names the folder after its PersistentVolume, read from the claim.
func restoreVolumeDir(ctx context.Context, reader client.Reader, hostPodsDir string, pvr *v1.PodVolumeRestore) (string, error) {
	spec := pvr.Spec
	var pod corev1.Pod
	if err := reader.Get(ctx, client.ObjectKey{Namespace: spec.Pod.Namespace, Name: spec.Pod.Name}, &pod); err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("pod %s/%s to restore into does not exist (deleted since the restore started?)", spec.Pod.Namespace, spec.Pod.Name)
		}
		return "", fmt.Errorf("read pod %s/%s: %w", spec.Pod.Namespace, spec.Pod.Name, err)
	}
	if spec.Pod.UID != "" && string(pod.UID) != spec.Pod.UID {
		return "", fmt.Errorf("pod %s/%s was replaced (UID %s, the restore was for %s); its volume is not restored", spec.Pod.Namespace, spec.Pod.Name, pod.UID, spec.Pod.UID)
	}
	v := hostpods.Volume{PodNamespace: pod.Namespace, PodName: pod.Name, PodUID: string(pod.UID), Name: spec.Volume}
	var source *corev1.Volume
	for i := range pod.Spec.Volumes {
		if pod.Spec.Volumes[i].Name == spec.Volume {
			source = &pod.Spec.Volumes[i]
		}
	}
	if source == nil {
		return "", fmt.Errorf("pod %s/%s has no volume %q", pod.Namespace, pod.Name, spec.Volume)
	}
	if pvc := source.PersistentVolumeClaim; pvc != nil {
		var claim corev1.PersistentVolumeClaim
		err := reader.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: pvc.ClaimName}, &claim)
		switch {
		case apierrors.IsNotFound(err):
			// The pod cannot start either until its claim exists; the wait's bound covers a claim that never comes.
			return "", &folderMissingError{fmt.Errorf("%s: PersistentVolumeClaim %s/%s does not exist yet", v, pod.Namespace, pvc.ClaimName)}
		case err != nil:
			return "", fmt.Errorf("read PersistentVolumeClaim %s/%s of %s: %w", pod.Namespace, pvc.ClaimName, v, err)
		case claim.Spec.VolumeName == "":
			return "", &folderMissingError{fmt.Errorf("%s: PersistentVolumeClaim %s/%s is not bound to a PersistentVolume yet", v, pod.Namespace, pvc.ClaimName)}
		}
		v.PVName = claim.Spec.VolumeName
	}
	dir, err := hostpods.Find(hostPodsDir, v)
	if errors.Is(err, hostpods.ErrNotFound) {
		return "", &folderMissingError{err}
	}
	return dir, err
}

// restore writes pvr's snapshot into dir from the repository of the source namespace, under a shared lock,
// then the done marker: the marker is written only once everything else is in place.
func (r *PodVolumeRestoreReconciler) restore(ctx context.Context, pvr *v1.PodVolumeRestore, dir string, progress func(v1.Progress)) (*restoreResult, error) {
	spec := pvr.Spec
	restoreUID, err := restoreUIDOf(pvr)
	if err != nil {
		return nil, err
	}
	snapID, err := id.Parse(spec.SnapshotID)
	if err != nil {
		return nil, fmt.Errorf("snapshot ID %q: %w", spec.SnapshotID, err)
	}
	ns := spec.SourceNamespace
	if ns == "" {
		ns = spec.Pod.Namespace
	}
	var loc v1.BackupStorageLocation
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: spec.StorageLocation}, &loc); err != nil {
		return nil, fmt.Errorf("read storage location %s/%s: %w", r.Namespace, spec.StorageLocation, err)
	}
	rp, err := bsl.OpenRepository(ctx, r.APIReader, &loc, ns, false)
	if err != nil {
		return nil, fmt.Errorf("open the repository of namespace %s in storage location %s (is the storage reachable from node %s?): %w", ns, loc.Name, r.NodeName, err)
	}
	defer rp.Close()
	rp.SetIndexPaging(r.IndexPaging)
	where := rp.Backend().Location()
	var res *restoreResult
	err = lock.WithLock(ctx, rp, lock.Shared, "restore", lock.Options{WaitTimeout: r.LockWait, Host: r.NodeName}, func(ctx context.Context) error {
		// The index is loaded under the lock: prune relies on every reader of the index holding one.
		if err := rp.LoadIndex(ctx); err != nil {
			return fmt.Errorf("load the index of the repository at %s: %w", where, err)
		}
		snap, err := rp.LoadSnapshot(ctx, snapID)
		if errors.Is(err, repo.ErrNotFound) {
			return fmt.Errorf("snapshot %s is not in the repository of namespace %s at %s (forgotten and pruned since the backup?)", snapID.Short(), ns, where)
		}
		if err != nil {
			return err
		}
		out, err := restore.Run(ctx, rp, snap, restore.Options{
			Target: dir,
			Progress: func(p restore.Progress) {
				progress(v1.Progress{BytesDone: int64(p.BytesDone), BytesTotal: int64(p.BytesTotal), FilesDone: int64(p.FilesDone), FilesTotal: int64(p.FilesTotal)})
			},
			ProgressInterval: min(r.ProgressInterval, defaultRestoreReading),
		})
		if err != nil {
			return explainWriteError(err, dir)
		}
		res = newRestoreResult(out)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("restore snapshot %s into %s: %w", snapID.Short(), dir, err)
	}
	if err := writeMarker(dir, restoreUID); err != nil {
		return nil, explainWriteError(err, dir)
	}
	return res, nil
}

// defaultRestoreReading bounds how stale the progress the reporter writes can be.
const defaultRestoreReading = time.Second

// restoreUIDOf is the UID of the Restore that controls pvr: the restore helper waits for a marker of that name.
func restoreUIDOf(pvr *v1.PodVolumeRestore) (string, error) {
	for _, o := range pvr.OwnerReferences {
		if o.Kind == "Restore" && o.Controller != nil && *o.Controller {
			if o.UID == "" || string(o.UID) != path.Base(string(o.UID)) || strings.HasPrefix(string(o.UID), ".") {
				return "", fmt.Errorf("the owning Restore's UID %q cannot name a marker file", o.UID)
			}
			return string(o.UID), nil
		}
	}
	return "", errors.New("the PodVolumeRestore has no controller ownerReference to a Restore, whose UID names the marker the restored pod waits for")
}

// explainWriteError adds what to do about the failures of writing a volume a user can act on.
func explainWriteError(err error, dir string) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("the volume at %s is full (make its claim bigger and restore again): %w", dir, err)
	case errors.Is(err, syscall.EROFS):
		return fmt.Errorf("the volume at %s is read-only: %w", dir, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("permission denied writing the volume at %s (does the node-agent run as root with its capabilities, or privileged where SELinux needs it?): %w", dir, err)
	}
	return err
}

func newRestoreResult(out *restore.Result) *restoreResult {
	res := &restoreResult{Progress: v1.Progress{BytesDone: int64(out.Bytes), BytesTotal: int64(out.Bytes), FilesDone: int64(out.Files), FilesTotal: int64(out.Files)}}
	for i, w := range out.Warnings {
		if len(res.Warnings) == maxWarnings {
			res.Warnings = append(res.Warnings, fmt.Sprintf("and %d more", len(out.Warnings)-i))
			break
		}
		res.Warnings = append(res.Warnings, w.String())
	}
	return res
}

// writeMarker creates MarkerDir/<uid> at the root of the volume at dir, after the data: the restore helper
// lets the pod's app start once it sees it. It is written through an os.Root, so a MarkerDir that is a
// symlink (restored from the snapshot, or planted in the volume) is replaced, never followed out of the
// volume. MarkerDir gets mode 0777 whatever the umask, so an unprivileged helper can empty it; the marker is
// synced so a node crash cannot leave a marker without the data before it.
func writeMarker(dir, uid string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("write the done marker: %w", err)
	}
	defer root.Close()
	// The restore wrote through the page cache: the data reaches the disk before the marker says it is there.
	vol, err := root.Open(".")
	if err != nil {
		return fmt.Errorf("write the done marker: %w", err)
	}
	err = unix.Syncfs(int(vol.Fd()))
	vol.Close()
	if err != nil {
		return fmt.Errorf("sync the restored volume: %w", err)
	}
	if fi, err := root.Lstat(MarkerDir); err == nil && !fi.IsDir() {
		if err := root.Remove(MarkerDir); err != nil {
			return fmt.Errorf("write the done marker: replace %s: %w", MarkerDir, err)
		}
	}
	if err := root.Mkdir(MarkerDir, 0o777); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("write the done marker: %w", err)
	}
	if err := root.Chmod(MarkerDir, 0o777); err != nil {
		return fmt.Errorf("write the done marker: %w", err)
	}
	// The folder is opened before the marker exists: from then on the helper may remove it at any moment,
	// and syncing the entry goes through this descriptor, not the name.
	d, err := root.Open(MarkerDir)
	if err != nil {
		return fmt.Errorf("write the done marker: %w", err)
	}
	defer d.Close()
	name := MarkerDir + "/" + uid
	if fi, err := root.Lstat(name); err == nil && !fi.Mode().IsRegular() {
		if err := root.RemoveAll(name); err != nil {
			return fmt.Errorf("write the done marker: replace %s: %w", name, err)
		}
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return fmt.Errorf("write the done marker: %w", err)
	}
	err = f.Chmod(0o644)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write the done marker %s: %w", name, err)
	}
	// The directory entry is synced too: the marker must survive a crash once the helper may have seen it.
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write the done marker: sync %s: %w", MarkerDir, err)
	}
	return nil
}
