package nodeagent

import (
	"context"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/backup"
)

// object is a pointer to one of the kinds whose status a node-agent writes (PodVolumeBackup,
// PodVolumeRestore, BackupRepository), so one function serves the three.
type object[T any] interface {
	client.Object
	*T
}

// updateStatusAt applies mutate to obj, the object as read, and writes its status with the resourceVersion
// it was read at. A conflict is returned: someone else moved the object, and the caller must look again.
// On success obj is the object written.
func updateStatusAt[T any, P object[T]](ctx context.Context, c client.Client, obj P, mutate func(P)) error {
	upd := obj.DeepCopyObject().(P)
	mutate(upd)
	if err := c.Status().Update(ctx, upd); err != nil {
		return err
	}
	*obj = *upd
	return nil
}

// updateStatusNewest reads the newest obj from the API server (past the cache: the agent's own progress
// patches and other writers move it on), applies mutate and writes its status, again on every conflict.
// mutate returns false to write nothing. An object of the same name but another UID was deleted and created
// again: not the one this outcome belongs to, reported as NotFound.
func updateStatusNewest[T any, P object[T]](ctx context.Context, reader client.Reader, c client.Client, obj P, resource string, mutate func(P) bool) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur := P(new(T))
		if err := reader.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return err
		}
		if cur.GetUID() != obj.GetUID() {
			return apierrors.NewNotFound(v1.GroupVersion.WithResource(resource).GroupResource(), obj.GetName())
		}
		if !mutate(cur) {
			return nil
		}
		return c.Status().Update(ctx, cur)
	})
}

// updateStatus applies mutate to a PodVolumeBackup's status: with retryConflicts as updateStatusNewest,
// without as updateStatusAt.
func (r *PodVolumeBackupReconciler) updateStatus(ctx context.Context, pvb *v1.PodVolumeBackup, retryConflicts bool, mutate func(*v1.PodVolumeBackupStatus)) error {
	if !retryConflicts {
		return updateStatusAt(ctx, r.Client, pvb, func(o *v1.PodVolumeBackup) { mutate(&o.Status) })
	}
	return updateStatusNewest(ctx, r.APIReader, r.Client, pvb, "podvolumebackups", func(o *v1.PodVolumeBackup) bool {
		mutate(&o.Status)
		return true
	})
}

// updateStatus applies mutate to a PodVolumeRestore's status, as PodVolumeBackupReconciler.updateStatus does.
func (r *PodVolumeRestoreReconciler) updateStatus(ctx context.Context, pvr *v1.PodVolumeRestore, retryConflicts bool, mutate func(*v1.PodVolumeRestoreStatus)) error {
	if !retryConflicts {
		return updateStatusAt(ctx, r.Client, pvr, func(o *v1.PodVolumeRestore) { mutate(&o.Status) })
	}
	return updateStatusNewest(ctx, r.APIReader, r.Client, pvr, "podvolumerestores", func(o *v1.PodVolumeRestore) bool {
		mutate(&o.Status)
		return true
	})
}

// progressBox holds the newest progress reading of a running backup or restore.
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

// reportProgress writes the progress in prog into obj's status (through setProgress) every interval until
// stop closes, and cancels the work with errDeleted once obj is gone or being deleted.
func reportProgress[T any, P object[T]](ctx context.Context, c client.Client, obj P, interval time.Duration, prog *progressBox,
	setProgress func(P, v1.Progress), cancel context.CancelCauseFunc, stop <-chan struct{}) {
	log := ctrl.LoggerFrom(ctx)
	t := time.NewTicker(interval)
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
		cur := P(new(T))
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur)
		if apierrors.IsNotFound(err) || (err == nil && (cur.GetUID() != obj.GetUID() || cur.GetDeletionTimestamp() != nil)) {
			cancel(errDeleted)
			return
		}
		p, ok := prog.get()
		if !ok || p == last {
			continue
		}
		// A merge patch of the progress alone: it never conflicts with, nor undoes, anyone's other changes.
		base := P(new(T))
		base.SetNamespace(obj.GetNamespace())
		base.SetName(obj.GetName())
		upd := base.DeepCopyObject().(P)
		setProgress(upd, p)
		err = c.Status().Patch(ctx, upd, client.MergeFrom(base))
		switch {
		case apierrors.IsNotFound(err):
			cancel(errDeleted)
			return
		case err != nil:
			// The next tick tries again; the work itself goes on.
			log.Error(err, "report progress", "object", obj.GetName())
		default:
			last = p
		}
	}
}
