package controller

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// DefaultRestoreReplacementGrace is how long a restore waits for a replacement of a restored pod deleted
// before its volumes were filled, before it takes those volumes as lost.
const DefaultRestoreReplacementGrace = 2 * time.Minute

// DefaultRestoreVolumeTimeout bounds how long a restored pod may stay without a node before its volumes
// count as failed.
const DefaultRestoreVolumeTimeout = 4 * time.Hour

// ConditionResourcesRestored is True once a restore has created the backup's objects; from then on it only
// follows its volumes, and a restarted controller does not create the objects again.
const ConditionResourcesRestored = "ResourcesRestored"

// RestoreReconciler drives Restores: it reads the backup from its storage location, creates the selected
// namespaces' objects in priority order (restored pods with backed-up volumes get the restore-wait init
// container), creates one PodVolumeRestore per volume once its pod has a node, and follows them to the end.
// The backed-up pods themselves are restored as Pod objects, before the controllers, which adopt them; pods
// the restored controllers create later get restore-wait from the RestoreWaitWebhook. While a restore is not
// over its target namespaces carry RestoringLabel, which scopes that webhook.
type RestoreReconciler struct {
	Client client.Client
	// APIReader reads Secrets and the restore helper's ConfigMap (not cached), and the pods and
	// PodVolumeRestores just created (the cache may lag).
	APIReader client.Reader
	Clock     clock.PassiveClock
	Events    events.EventRecorder
	// Metrics counts what ends (nil: nothing is counted).
	Metrics *Metrics
	// Namespace is the install namespace: its Restores are served; storage locations, the restore helper's
	// ConfigMap and the PodVolumeRestores live there.
	Namespace string
	// Priorities orders the restored resources (DefaultRestorePriorities if nil).
	Priorities []string
	// VolumeTimeout is how long a restored pod may stay unbound before its volumes fail
	// (DefaultRestoreVolumeTimeout if zero).
	VolumeTimeout time.Duration
	// ReplacementGrace is how long volumes whose pods were deleted before their data arrived wait for a
	// replacement pod (DefaultRestoreReplacementGrace if zero).
	ReplacementGrace time.Duration
	// DefaultTimeout bounds Restores that set no spec.timeout (DefaultTimeout if zero; negative: no bound).
	DefaultTimeout time.Duration

	// lostSince remembers, by Restore UID, when this process first saw volumes of the restore lost.
	lostSince sync.Map
	// reported remembers the PodVolumeRestores whose end was announced, so each is announced once per process.
	reported sync.Map
}

// SetupWithManager registers the reconciler. Restored pods are mapped to their Restore by the restore label,
// so binding a pod to a node wakes the restore; PodVolumeRestores by their owner.
func (r *RestoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.Restore{}).
		Owns(&v1.PodVolumeRestore{}).
		Watches(&corev1.Pod{}, enqueueByLabel(v1.RestoreLabel, r.Namespace)).
		Named("restore").Complete(r)
}

// Reconcile moves one Restore along: New → InProgress → Completed, PartiallyFailed or Failed.
func (r *RestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace {
		return ctrl.Result{}, nil
	}
	var rs v1.Restore
	err := r.Client.Get(ctx, req.NamespacedName, &rs)
	if apierrors.IsNotFound(err) {
		// A Restore deleted before it ended must not leave its namespaces calling the webhook.
		return ctrl.Result{}, r.releaseNamespaces(ctx, req.Name)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if !rs.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.releaseNamespaces(ctx, rs.Name)
	}
	switch rs.Status.Phase {
	case "", v1.PhaseNew:
		return r.startRestore(ctx, &rs)
	case v1.PhaseInProgress:
		if !meta.IsStatusConditionTrue(rs.Status.Conditions, ConditionResourcesRestored) {
			return r.restoreResources(ctx, &rs)
		}
		return r.followVolumes(ctx, &rs)
	default:
		// Ended: also when a release failed as it ended, or a controller stopped between the two.
		return ctrl.Result{}, r.releaseNamespaces(ctx, rs.Name)
	}
}

// startRestore checks what can be checked before anything is created, and moves to InProgress.
func (r *RestoreReconciler) startRestore(ctx context.Context, rs *v1.Restore) (ctrl.Result, error) {
	if len(rs.Name) > maxNameLength {
		return r.failRestore(ctx, rs, fmt.Sprintf("restore name %q is longer than %d characters: it must fit in the %s label of restored pods", rs.Name, maxNameLength, v1.RestoreLabel))
	}
	loc, problem, err := r.findBackup(ctx, rs.Spec.BackupName)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != "" {
		return r.failRestore(ctx, rs, problem)
	}
	now := metav1.NewTime(r.Clock.Now())
	err = r.updateStatus(ctx, rs, func(s *v1.RestoreStatus) bool {
		if s.Phase != "" && s.Phase != v1.PhaseNew {
			return false
		}
		s.Phase = v1.PhaseInProgress
		s.StartTimestamp = &now
		return true
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	r.Events.Eventf(rs, nil, corev1.EventTypeNormal, "Started", "Start", "restore of backup %s started, from storage location %s", rs.Spec.BackupName, loc.Name)
	return ctrl.Result{}, nil
}

// failRestore ends the restore as Failed for a reason no retry fixes.
func (r *RestoreReconciler) failRestore(ctx context.Context, rs *v1.Restore, reason string) (ctrl.Result, error) {
	now := metav1.NewTime(r.Clock.Now())
	ended := false
	err := r.updateStatus(ctx, rs, func(s *v1.RestoreStatus) bool {
		if s.Phase != "" && s.Phase != v1.PhaseNew && s.Phase != v1.PhaseInProgress {
			ended = false
			return false
		}
		ended = true
		s.Phase = v1.PhaseFailed
		s.Errors = append(s.Errors, reason)
		s.CompletionTimestamp = &now
		if s.StartTimestamp == nil {
			s.StartTimestamp = &now
		}
		return true
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	r.Events.Eventf(rs, nil, corev1.EventTypeWarning, "Failed", "Restore", "restore failed: %s", reason)
	if ended {
		r.Metrics.restoreEnded(rs)
	}
	return ctrl.Result{}, r.releaseNamespaces(ctx, rs.Name)
}

// updateStatus applies mutate to the restore's status and stores it, on a conflict reading the restore again
// and applying mutate to the fresh copy: work already done (objects created) must not be lost to a race with
// another writer of the status. mutate returns false to leave the status as it is. rs ends up as stored.
func (r *RestoreReconciler) updateStatus(ctx context.Context, rs *v1.Restore, mutate func(*v1.RestoreStatus) bool) error {
	first := true
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !first {
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
				return err
			}
		}
		first = false
		if !mutate(&rs.Status) {
			return nil
		}
		return r.Client.Status().Update(ctx, rs)
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("update status of restore %s: %w", rs.Name, err)
	}
	return nil
}

// storeStatus stores a status computed from what the reconcile read; a conflict means the restore moved on
// meanwhile, so it is looked at again with fresh data rather than overwritten.
func (r *RestoreReconciler) storeStatus(ctx context.Context, rs *v1.Restore) (retry bool, err error) {
	err = r.Client.Status().Update(ctx, rs)
	switch {
	case err == nil:
		return false, nil
	case apierrors.IsConflict(err):
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, fmt.Errorf("update status of restore %s: %w", rs.Name, err)
}

func (r *RestoreReconciler) priorities() []string {
	if r.Priorities != nil {
		return r.Priorities
	}
	return DefaultRestorePriorities
}

func (r *RestoreReconciler) replacementGrace() time.Duration {
	if r.ReplacementGrace > 0 {
		return r.ReplacementGrace
	}
	return DefaultRestoreReplacementGrace
}

func (r *RestoreReconciler) volumeTimeout() time.Duration {
	if r.VolumeTimeout > 0 {
		return r.VolumeTimeout
	}
	return DefaultRestoreVolumeTimeout
}
