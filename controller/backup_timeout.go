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

// deadline is when the backup must have ended; ok is false when it has no bound.
func (r *BackupReconciler) deadline(b *v1.Backup) (time.Time, bool) {
	return Deadline(b.Status.StartTimestamp, Timeout(b.Spec.Timeout, r.DefaultTimeout))
}

// timeOut ends the backup's unfinished volumes once it ran out of time: each PodVolumeBackup not terminal is
// failed with "timed out after …" (its node-agent sees that and stops; a finished one is never touched), no
// further PodVolumeBackup is created, and the backup finishes with what completed. Each write carries the
// resourceVersion read: a conflict means a node-agent moved the volume meanwhile, and it is looked at again.
func (r *BackupReconciler) timeOut(ctx context.Context, b *v1.Backup, pvbs []v1.PodVolumeBackup) error {
	timeout := Timeout(b.Spec.Timeout, r.DefaultTimeout)
	msg := TimedOutMessage(timeout)
	if !meta.IsStatusConditionTrue(b.Status.Conditions, ConditionTimedOut) {
		unfinished := max(b.Status.VolumesTotal-b.Status.VolumesCompleted-b.Status.VolumesFailed, 0)
		meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{Type: ConditionTimedOut, Status: metav1.ConditionTrue,
			Reason: "Timeout", Message: msg, ObservedGeneration: b.Generation})
		// The set of volumes is final: none is created after the timeout.
		meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{Type: ConditionVolumesPlanned, Status: metav1.ConditionTrue,
			Reason: "TimedOut", Message: "the backup timed out; no more volumes are started", ObservedGeneration: b.Generation})
		addOnce(&b.Status.Errors, fmt.Sprintf("backup %s: the volumes not finished by then failed", msg))
		r.Events.Eventf(b, nil, corev1.EventTypeWarning, "TimedOut", "Backup", "backup %s (spec.timeout, counted from its start): failing %d unfinished volumes, keeping the %d completed",
			msg, unfinished, b.Status.VolumesCompleted)
	}
	now := metav1.NewTime(r.Clock.Now())
	for i := range pvbs {
		pvb := &pvbs[i]
		if volumeTerminal(pvb.Status.Phase) {
			continue
		}
		pvb.Status.Phase = v1.VolumePhaseFailed
		pvb.Status.Message = msg
		pvb.Status.CompletionTimestamp = &now
		if err := r.Client.Status().Update(ctx, pvb); err != nil {
			return fmt.Errorf("fail PodVolumeBackup %s on the backup's timeout: %w", pvb.Name, err)
		}
	}
	return nil
}

// anyUnfinished reports whether a PodVolumeBackup is not terminal yet. A backup whose volumes all ended is
// only storing its metadata: a timeout then would fail nothing and only mislabel it.
func anyUnfinished(pvbs []v1.PodVolumeBackup) bool {
	for i := range pvbs {
		if !volumeTerminal(pvbs[i].Status.Phase) {
			return true
		}
	}
	return false
}
