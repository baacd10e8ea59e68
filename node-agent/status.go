package nodeagent

import (
	"context"
	"fmt"
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

// endedError says a PodVolumeBackup or PodVolumeRestore was found terminal while this agent still worked on
// it: someone else ended it (the controller fails the unfinished volumes of a Backup or Restore that timed
// out). Its phase and message stand: the agent stops the work and never writes over them.
type endedError struct {
	phase   v1.VolumePhase
	message string
}

func (e *endedError) Error() string {
	return fmt.Sprintf("ended by the controller meanwhile (%s: %s)", e.phase, e.message)
}

// endedIf is an *endedError when phase is terminal, else nil.
func endedIf(phase v1.VolumePhase, message string) error {
	switch phase {
	case v1.VolumePhaseCompleted, v1.VolumePhaseFailed, v1.VolumePhaseCanceled:
		return &endedError{phase: phase, message: message}
	}
	return nil
}

// updateStatus applies mutate to a PodVolumeBackup's status: with retryConflicts as updateStatusNewest,
// without as updateStatusAt. With retryConflicts a newest status that is terminal is left alone and an
// *endedError returned: the agent's outcome never overwrites the controller's.
func (r *PodVolumeBackupReconciler) updateStatus(ctx context.Context, pvb *v1.PodVolumeBackup, retryConflicts bool, mutate func(*v1.PodVolumeBackupStatus)) error {
	if !retryConflicts {
		return updateStatusAt(ctx, r.Client, pvb, func(o *v1.PodVolumeBackup) { mutate(&o.Status) })
	}
	var ended error
	err := updateStatusNewest(ctx, r.APIReader, r.Client, pvb, "podvolumebackups", func(o *v1.PodVolumeBackup) bool {
		if ended = endedIf(o.Status.Phase, o.Status.Message); ended != nil {
			return false
		}
		mutate(&o.Status)
		return true
	})
	if err == nil {
		err = ended
	}
	return err
}

// updateStatus applies mutate to a PodVolumeRestore's status, as PodVolumeBackupReconciler.updateStatus does.
func (r *PodVolumeRestoreReconciler) updateStatus(ctx context.Context, pvr *v1.PodVolumeRestore, retryConflicts bool, mutate func(*v1.PodVolumeRestoreStatus)) error {
	if !retryConflicts {
		return updateStatusAt(ctx, r.Client, pvr, func(o *v1.PodVolumeRestore) { mutate(&o.Status) })
	}
	var ended error
	err := updateStatusNewest(ctx, r.APIReader, r.Client, pvr, "podvolumerestores", func(o *v1.PodVolumeRestore) bool {
		if ended = endedIf(o.Status.Phase, o.Status.Message); ended != nil {
			return false
		}
		mutate(&o.Status)
		return true
	})
	if err == nil {
		err = ended
	}
	return err
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
// stop closes, and cancels the work with errDeleted once obj is gone or being deleted, and with ended's
// error once that says someone else ended it.
func reportProgress[T any, P object[T]](ctx context.Context, c client.Client, obj P, interval time.Duration, prog *progressBox,
	setProgress func(P, v1.Progress), ended func(P) error, cancel context.CancelCauseFunc, stop <-chan struct{}) {
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
		if err == nil {
			if e := ended(cur); e != nil {
				cancel(e)
				return
			}
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
