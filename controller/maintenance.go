package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// MaintenanceReconciler decides WHEN each repository is pruned and checked, and records the request in the
// BackupRepository's status.maintenance; a node-agent claims and runs it (node-agent/maintenance.go).
//
// Prune and check run in a node-agent, not in a Job: the node-agent already holds the storage credentials
// and the engine, and runs under a memory limit sized for it; a Job would need its image pulled (offline
// clusters mirror it), a job controller, and a second copy of the credential plumbing.
type MaintenanceReconciler struct {
	Client client.Client
	Clock  clock.PassiveClock
	// Events, when set, records a re-request on the BackupRepository.
	Events events.EventRecorder
	// Namespace is the install namespace; BackupRepositories elsewhere are ignored.
	Namespace string
	// RetryDelay is how soon a failed or postponed run is requested again (DefaultMaintenanceRetryDelay).
	RetryDelay time.Duration
	// StaleAfter is how long a claimed run may go without a heartbeat before it is requested again
	// (DefaultMaintenanceStaleAfter).
	StaleAfter time.Duration
}

// Event reasons the controller records on BackupRepositories.
const (
	ReasonMaintenanceRequested   = "MaintenanceRequested"
	ReasonMaintenanceRerequested = "MaintenanceRerequested"
)

// SetupWithManager fills unset tunables and registers the reconciler.
func (r *MaintenanceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.setDefaults()
	return ctrl.NewControllerManagedBy(mgr).For(&v1.BackupRepository{}).Named("maintenance").Complete(r)
}

func (r *MaintenanceReconciler) setDefaults() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.RetryDelay <= 0 {
		r.RetryDelay = DefaultMaintenanceRetryDelay
	}
	if r.StaleAfter <= 0 {
		r.StaleAfter = DefaultMaintenanceStaleAfter
	}
}

// Reconcile requests a prune or a check of one repository when it is due, requests again a run whose
// node-agent stopped heartbeating, and otherwise comes back when the next run is due.
func (r *MaintenanceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace {
		return ctrl.Result{}, nil
	}
	var br v1.BackupRepository
	if err := r.Client.Get(ctx, req.NamespacedName, &br); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !br.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	d := decideMaintenance(&br, now, r.RetryDelay, r.StaleAfter)
	if d.Request == "" {
		return ctrl.Result{RequeueAfter: d.After}, nil
	}
	return r.request(ctx, &br, d, now)
}

// request writes a new request with the resourceVersion read: a conflict means a node-agent or a backup
// changed the repository meanwhile, so it decides again on fresh data.
func (r *MaintenanceReconciler) request(ctx context.Context, br *v1.BackupRepository, d maintenanceDecision, now time.Time) (ctrl.Result, error) {
	old := br.Status.Maintenance
	upd := br.DeepCopy()
	upd.Status.Maintenance = &v1.MaintenanceRun{ID: utilrand.String(10), Kind: d.Request, RequestedTime: metav1.NewTime(now)}
	if err := r.Client.Status().Update(ctx, upd); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, fmt.Errorf("request %s of BackupRepository %s: %w", d.Request, br.Name, err)
	}
	log := ctrl.LoggerFrom(ctx)
	if d.Stale {
		log.Info("maintenance run abandoned, requested again", "repository", br.Name, "kind", d.Request, "node", old.Node)
		r.event(upd, corev1.EventTypeWarning, ReasonMaintenanceRerequested, "the %s run claimed by node %s sent no heartbeat for %s; requested again", d.Request, old.Node, r.StaleAfter)
	} else {
		log.Info("maintenance requested", "repository", br.Name, "kind", d.Request)
		r.event(upd, corev1.EventTypeNormal, ReasonMaintenanceRequested, "%s requested", d.Request)
	}
	// The claim or its absence changes the object and brings it back here.
	return ctrl.Result{}, nil
}

func (r *MaintenanceReconciler) event(br *v1.BackupRepository, eventType, reason, note string, args ...any) {
	if r.Events != nil {
		r.Events.Eventf(br, nil, eventType, reason, "Maintenance", note, args...)
	}
}
