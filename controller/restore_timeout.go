package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// deadline is when the restore must have ended; ok is false when it has no bound.
func (r *RestoreReconciler) deadline(rs *v1.Restore) (time.Time, bool) {
	return Deadline(rs.Status.StartTimestamp, Timeout(rs.Spec.Timeout, r.DefaultTimeout))
}

// timeOut fails the restore's unfinished PodVolumeRestores once it ran out of time, with "timed out after …"
// (their node-agents see that and stop; a finished one is never touched), and records the timeout once. The
// caller fails the volumes that have no PodVolumeRestore yet. Each write carries the resourceVersion read:
// a conflict means a node-agent moved the volume meanwhile, and is returned for the caller to look again.
func (r *RestoreReconciler) timeOut(ctx context.Context, rs *v1.Restore, pvrs map[string]*v1.PodVolumeRestore) error {
	msg := TimedOutMessage(Timeout(rs.Spec.Timeout, r.DefaultTimeout))
	if !meta.IsStatusConditionTrue(rs.Status.Conditions, ConditionTimedOut) {
		meta.SetStatusCondition(&rs.Status.Conditions, metav1.Condition{Type: ConditionTimedOut, Status: metav1.ConditionTrue,
			Reason: "Timeout", Message: msg, ObservedGeneration: rs.Generation})
		addOnce(&rs.Status.Errors, fmt.Sprintf("restore %s: the volumes not restored by then failed", msg))
		r.Events.Eventf(rs, nil, corev1.EventTypeWarning, "TimedOut", "Restore", "restore %s (spec.timeout, counted from its start): failing the unfinished volumes, keeping the %d restored",
			msg, rs.Status.VolumesCompleted)
	}
	now := metav1.NewTime(r.Clock.Now())
	for _, pvr := range pvrs {
		if volumeTerminal(pvr.Status.Phase) {
			continue
		}
		upd := pvr.DeepCopy()
		upd.Status.Phase = v1.VolumePhaseFailed
		upd.Status.Message = msg
		upd.Status.CompletionTimestamp = &now
		if err := r.Client.Status().Update(ctx, upd); err != nil {
			return fmt.Errorf("fail PodVolumeRestore %s on the restore's timeout: %w", pvr.Name, err)
		}
		*pvr = *upd
	}
	return nil
}
