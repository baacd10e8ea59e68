package nodeagent

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// updateStatus applies mutate to a PodVolumeRestore's status, as PodVolumeBackupReconciler.updateStatus does:
// without retryConflicts a conflict is returned for the caller to look again; with it, the newest object is
// read from the API server and mutate applied again on every conflict.
func (r *PodVolumeRestoreReconciler) updateStatus(ctx context.Context, pvr *v1.PodVolumeRestore, retryConflicts bool, mutate func(*v1.PodVolumeRestoreStatus)) error {
	if !retryConflicts {
		upd := pvr.DeepCopy()
		mutate(&upd.Status)
		if err := r.Client.Status().Update(ctx, upd); err != nil {
			return err
		}
		*pvr = *upd
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		var cur v1.PodVolumeRestore
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(pvr), &cur); err != nil {
			return err
		}
		if cur.UID != pvr.UID {
			// Deleted and created again under the same name: not the object this outcome belongs to.
			return apierrors.NewNotFound(v1.GroupVersion.WithResource("podvolumerestores").GroupResource(), pvr.Name)
		}
		mutate(&cur.Status)
		return r.Client.Status().Update(ctx, &cur)
	})
}

// reportProgress writes status.progress every ProgressInterval until stop closes, and cancels the restore
// with errDeleted once its PodVolumeRestore is gone or being deleted.
func (r *PodVolumeRestoreReconciler) reportProgress(ctx context.Context, pvr *v1.PodVolumeRestore, prog *progressBox, cancel context.CancelCauseFunc, stop <-chan struct{}) {
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
		var cur v1.PodVolumeRestore
		err := r.Client.Get(ctx, client.ObjectKeyFromObject(pvr), &cur)
		if apierrors.IsNotFound(err) || (err == nil && (cur.UID != pvr.UID || cur.DeletionTimestamp != nil)) {
			cancel(errDeleted)
			return
		}
		p, ok := prog.get()
		if !ok || p == last {
			continue
		}
		// A merge patch of the progress alone: it never conflicts with, nor undoes, anyone's other changes.
		base := &v1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: pvr.Namespace, Name: pvr.Name}}
		upd := base.DeepCopy()
		upd.Status.Progress = p
		err = r.Client.Status().Patch(ctx, upd, client.MergeFrom(base))
		switch {
		case apierrors.IsNotFound(err):
			cancel(errDeleted)
			return
		case err != nil:
			// The next tick tries again; the restore itself goes on.
			log.Error(err, "report progress", "podvolumerestore", pvr.Name)
		default:
			last = p
		}
	}
}
