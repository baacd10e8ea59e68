// Package controller holds Straddle's reconcilers, one file each.
package controller

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/storage"
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
	// Secrets reads credentials Secrets; the manager's API reader, so the controller caches no Secrets and
	// needs no cluster-wide right to watch them. Nil means Client.
	Secrets client.Reader
	// Check tests access to a location; nil means storing and deleting a small object in it.
	Check func(ctx context.Context, loc *v1.BackupStorageLocation) error
}

// SetupWithManager registers the reconciler.
func (r *BackupStorageLocationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	// Only spec changes start a check: the status this reconciler writes would otherwise start the next one,
	// checking the storage in a tight loop. Periodic checks come from RequeueAfter.
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.BackupStorageLocation{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("backupstoragelocation").Complete(r)
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
		check = r.checkAccess
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

// checkAccess tests that a location exists and can be written: for a directory, by creating and removing a
// file in it; for a bucket, by storing and deleting a small object under the location's prefix, which proves
// the credentials, the bucket and the write permission in one go.
func (r *BackupStorageLocationReconciler) checkAccess(ctx context.Context, loc *v1.BackupStorageLocation) error {
	if loc.Spec.Provider == "filesystem" && loc.Spec.Filesystem != nil {
		return checkDirectory(loc.Spec.Filesystem.Path)
	}
	secrets := r.Secrets
	if secrets == nil {
		secrets = r.Client
	}
	be, err := bsl.OpenStorage(ctx, secrets, loc, "")
	if err != nil {
		return err
	}
	probe := accessProbePrefix + rand.Text()
	if err := storage.PutBytes(ctx, be, probe, []byte("straddle access check\n")); err != nil {
		return fmt.Errorf("write a test object to %s: %w", be.Location(), err)
	}
	if err := be.Delete(ctx, probe); err != nil {
		return fmt.Errorf("delete the test object %s from %s: %w", probe, be.Location(), err)
	}
	return nil
}

// accessProbePrefix names the short-lived objects of access checks; no repository object starts with it.
const accessProbePrefix = "straddle-access-check-"

func checkDirectory(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("directory %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	f, err := os.CreateTemp(dir, "."+accessProbePrefix)
	if err != nil {
		return fmt.Errorf("directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(filepath.Clean(name))
}
