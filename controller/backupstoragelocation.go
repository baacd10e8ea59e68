// Package controller holds Straddle's reconcilers, one file each.
package controller

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// DefaultValidationInterval is how often a location's access is checked again.
const DefaultValidationInterval = time.Minute

// BackupStorageLocationReconciler checks that each storage location can be reached and written, and records
// the answer in its status, so a user sees a broken location before a backup fails on it.
type BackupStorageLocationReconciler struct {
	Client client.Client
	Clock  clock.PassiveClock
	// Interval is how often access is checked again (DefaultValidationInterval if zero).
	Interval time.Duration
	// Check tests access to a location; nil means CheckAccess.
	Check func(ctx context.Context, loc *v1.BackupStorageLocation) error
}

// SetupWithManager registers the reconciler.
func (r *BackupStorageLocationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).For(&v1.BackupStorageLocation{}).Named("backupstoragelocation").Complete(r)
}

// Reconcile checks one location and records the result.
func (r *BackupStorageLocationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var loc v1.BackupStorageLocation
	if err := r.Client.Get(ctx, req.NamespacedName, &loc); err != nil {
		// Deleted: nothing to check.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	check := r.Check
	if check == nil {
		check = CheckAccess
	}
	phase, reason, message := v1.LocationAvailable, "Reachable", "storage is reachable and writable"
	if err := check(ctx, &loc); err != nil {
		phase, reason, message = v1.LocationUnavailable, "Unreachable", err.Error()
	}
	now := metav1.NewTime(r.Clock.Now())
	patch := client.MergeFrom(loc.DeepCopy())
	loc.Status.Phase = phase
	loc.Status.Message = message
	loc.Status.LastValidationTime = &now
	status := metav1.ConditionTrue
	if phase != v1.LocationAvailable {
		status = metav1.ConditionFalse
	}
	meta.SetStatusCondition(&loc.Status.Conditions, metav1.Condition{Type: "Available", Status: status, Reason: reason, Message: message, ObservedGeneration: loc.Generation})
	if err := r.Client.Status().Patch(ctx, &loc, patch); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			// Someone else moved it (or deleted it): not an error; look again shortly with fresh data.
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, fmt.Errorf("record status of %s: %w", req.NamespacedName, err)
	}
	interval := r.Interval
	if interval == 0 {
		interval = DefaultValidationInterval
	}
	// Storage breaks without telling the API server: look again later whatever the answer was.
	return ctrl.Result{RequeueAfter: interval}, nil
}

// CheckAccess tests that a location exists and can be written: for a directory, by creating and removing a
// file in it.
func CheckAccess(_ context.Context, loc *v1.BackupStorageLocation) error {
	switch loc.Spec.Provider {
	case "filesystem":
		if loc.Spec.Filesystem == nil {
			return errors.New("provider filesystem needs the filesystem section")
		}
		dir := loc.Spec.Filesystem.Path
		fi, err := os.Stat(dir)
		if err != nil {
			return fmt.Errorf("directory %s: %w", dir, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		f, err := os.CreateTemp(dir, ".straddle-access-check-")
		if err != nil {
			return fmt.Errorf("directory %s is not writable: %w", dir, err)
		}
		name := f.Name()
		f.Close()
		return os.Remove(filepath.Clean(name))
	case "s3":
		return errors.New("S3 storage cannot be checked by this version of Straddle yet")
	}
	return fmt.Errorf("unknown provider %q", loc.Spec.Provider)
}
