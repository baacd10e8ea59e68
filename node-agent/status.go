package nodeagent

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/backup"
)

// updateStatus applies mutate to a PodVolumeBackup's status and writes it with the resourceVersion it was
// read at. Without retryConflicts, pvb is the object read and a conflict is returned: someone else moved it,
// and the caller must look again. With retryConflicts, the newest object is read from the API server (the
// agent's own progress patches move it on) and mutate applied again on every conflict.
func (r *PodVolumeBackupReconciler) updateStatus(ctx context.Context, pvb *v1.PodVolumeBackup, retryConflicts bool, mutate func(*v1.PodVolumeBackupStatus)) error {
	if !retryConflicts {
		upd := pvb.DeepCopy()
		mutate(&upd.Status)
		if err := r.Client.Status().Update(ctx, upd); err != nil {
			return err
		}
		*pvb = *upd
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		var cur v1.PodVolumeBackup
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(pvb), &cur); err != nil {
			return err
		}
		if cur.UID != pvb.UID {
			// Deleted and created again under the same name: not the object this outcome belongs to.
			return apierrors.NewNotFound(v1.GroupVersion.WithResource("podvolumebackups").GroupResource(), pvb.Name)
		}
		mutate(&cur.Status)
		return r.Client.Status().Update(ctx, &cur)
	})
}

// progressBox holds the newest progress reading of a running backup.
type progressBox struct {
	mu sync.Mutex
	p  v1.Progress
	ok bool
}

func (b *progressBox) store(p backup.Progress) {
	b.set(v1.Progress{BytesDone: int64(p.BytesDone), BytesTotal: int64(p.BytesTotal), FilesDone: int64(p.FilesDone), FilesTotal: int64(p.FilesTotal)})
}

func (b *progressBox) set(p v1.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.p, b.ok = p, true
}

func (b *progressBox) get() (v1.Progress, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.p, b.ok
}

// reportProgress writes status.progress every ProgressInterval until stop closes, and cancels the backup
// with errDeleted once its PodVolumeBackup is gone or being deleted.
func (r *PodVolumeBackupReconciler) reportProgress(ctx context.Context, pvb *v1.PodVolumeBackup, prog *progressBox, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	log := ctrl.LoggerFrom(ctx)
	t := time.NewTicker(r.ProgressInterval)
	defer t.Stop()
	var last v1.Progress
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var cur v1.PodVolumeBackup
		err := r.Client.Get(ctx, client.ObjectKeyFromObject(pvb), &cur)
		if apierrors.IsNotFound(err) || (err == nil && (cur.UID != pvb.UID || cur.DeletionTimestamp != nil)) {
			cancel(errDeleted)
			return
		}
		p, ok := prog.get()
		if !ok || p == last {
			continue
		}
		// A merge patch of the progress alone: it never conflicts with, nor undoes, anyone's other changes.
		base := &v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: pvb.Namespace, Name: pvb.Name}}
		upd := base.DeepCopy()
		upd.Status.Progress = p
		err = r.Client.Status().Patch(ctx, upd, client.MergeFrom(base))
		switch {
		case apierrors.IsNotFound(err):
			cancel(errDeleted)
			return
		case err != nil:
			// The next tick tries again; the backup itself goes on.
			log.Error(err, "report progress", "podvolumebackup", pvb.Name)
		default:
			last = p
		}
	}
}
