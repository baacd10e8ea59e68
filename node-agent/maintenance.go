package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/prune"
)

// Defaults of MaintenanceReconciler's tunables.
const (
	// DefaultHeartbeatInterval is how often a running maintenance run says so in its BackupRepository; the
	// controller requests the run again after several missed ones.
	DefaultHeartbeatInterval = 30 * time.Second
	// DefaultCheckLockWait is how long a check waits while prune holds the repository exclusively.
	DefaultCheckLockWait = 10 * time.Minute
)

// Event reasons recorded on BackupRepositories.
const (
	ReasonMaintenanceStarted = "MaintenanceStarted"
	ReasonPruneCompleted     = "PruneCompleted"
	ReasonPrunePostponed     = "PrunePostponed"
	ReasonPruneFailed        = "PruneFailed"
	ReasonCheckCompleted     = "CheckCompleted"
	ReasonCheckFoundErrors   = "CheckFoundErrors"
	ReasonCheckFailed        = "CheckFailed"
)

// MaintenanceReconciler claims and runs the prunes and checks the controller requests in BackupRepositories'
// status.maintenance (controller/maintenance.go decides when). Every node-agent watches the install
// namespace's BackupRepositories and tries to claim a request by writing its node with the resourceVersion it
// read: the API server lets exactly one such write through, and the others get a Conflict and leave it. The
// winner heartbeats while it runs, records the result and clears the request. A run never starts twice in one
// process, and one reconcile worker (apart from the backups' and restores' workers) makes one run at a time
// per agent, so maintenance never takes a backup's slot.
//
// Maintenance runs here rather than in a Job because the node-agent already holds the storage credentials and
// the engine and runs under a memory limit sized for it; a Job would need its image pulled (offline clusters
// mirror it), a job controller, and a second copy of the credential plumbing.
type MaintenanceReconciler struct {
	// Client reads BackupRepositories from the manager's cache and writes them.
	Client client.Client
	// APIReader reads storage locations, Secrets and fresh BackupRepositories uncached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.Clock
	// NodeName is the node this agent serves; Namespace the install namespace.
	NodeName, Namespace string
	// HeartbeatInterval is how often a running run heartbeats (DefaultHeartbeatInterval).
	HeartbeatInterval time.Duration
	// PruneMaxWait bounds how long prune waits for running backups before it is postponed
	// (prune.DefaultMaxWait).
	PruneMaxWait time.Duration
	// CheckLockWait is how long a check waits for a prune's exclusive lock (DefaultCheckLockWait).
	CheckLockWait time.Duration
	// Metrics, when set, count runs, durations, bytes freed and problems found.
	Metrics *MaintenanceMetrics

	mu sync.Mutex
	// handled holds the IDs of the requests this process claimed.
	handled map[string]bool
	// beforeRun, when set, runs once a request is claimed and its heartbeat runs; tests hold runs there.
	beforeRun func(ctx context.Context, br *v1.BackupRepository)
}

// SetupWithManager fills unset tunables with their defaults and runs the reconciler in mgr with one worker.
// mgr's cache should hold the install namespace's BackupRepositories.
func (r *MaintenanceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.APIReader == nil || r.NodeName == "" || r.Namespace == "" {
		return errors.New("MaintenanceReconciler needs Client, APIReader, NodeName and Namespace")
	}
	r.setDefaults()
	return ctrl.NewControllerManagedBy(mgr).
		Named("maintenance").
		For(&v1.BackupRepository{}).
		WithOptions(controller.Options{
			// One run at a time per agent: it runs inside Reconcile.
			MaxConcurrentReconciles: 1,
			SkipNameValidation:      ptr.To(true),
		}).
		Complete(r)
}

func (r *MaintenanceReconciler) setDefaults() {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.HeartbeatInterval <= 0 {
		r.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if r.PruneMaxWait <= 0 {
		r.PruneMaxWait = prune.DefaultMaxWait
	}
	if r.CheckLockWait <= 0 {
		r.CheckLockWait = DefaultCheckLockWait
	}
}

// Reconcile claims a requested run of one BackupRepository and runs it to its end.
func (r *MaintenanceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace {
		return ctrl.Result{}, nil
	}
	var br v1.BackupRepository
	if err := r.Client.Get(ctx, req.NamespacedName, &br); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if br.DeletionTimestamp != nil || !r.claimable(br.Status.Maintenance) {
		return ctrl.Result{}, nil
	}
	return r.take(ctx, &br)
}

func (r *MaintenanceReconciler) claimable(m *v1.MaintenanceRun) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return claimable(m, r.NodeName, r.handled)
}

func (r *MaintenanceReconciler) markHandled(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.handled == nil {
		r.handled = map[string]bool{}
	}
	r.handled[id] = true
}

// take claims the request with the resourceVersion read, then runs it. A conflict means another agent won,
// or the request changed: it is looked at again on fresh data rather than run twice.
func (r *MaintenanceReconciler) take(ctx context.Context, br *v1.BackupRepository) (ctrl.Result, error) {
	now := metav1.NewTime(r.Clock.Now())
	upd := br.DeepCopy()
	m := upd.Status.Maintenance
	m.Node, m.StartTime, m.HeartbeatTime = r.NodeName, &now, &now
	if err := r.Client.Status().Update(ctx, upd); err != nil {
		if apierrors.IsConflict(err) {
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.markHandled(m.ID)
	r.run(ctx, upd)
	return ctrl.Result{}, nil
}

// errClaimLost cancels a run whose request was withdrawn or given to another agent (the controller took this
// agent for dead).
var errClaimLost = errors.New("the maintenance request is no longer this agent's")

// run runs the claimed request of br while heartbeating, then records the result. When the agent is stopping
// the claim stays, for this agent's next start (or, after the heartbeat goes stale, any agent) to run again.
func (r *MaintenanceReconciler) run(ctx context.Context, br *v1.BackupRepository) {
	log := ctrl.LoggerFrom(ctx).WithValues("repository", br.Name)
	m := *br.Status.Maintenance
	log.Info("maintenance started", "kind", m.Kind, "id", m.ID)
	r.event(br, corev1.EventTypeNormal, ReasonMaintenanceStarted, "%s started on node %s", m.Kind, r.NodeName)
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var beat sync.WaitGroup
	stop := make(chan struct{})
	beat.Go(func() { r.heartbeat(rctx, br, m.ID, cancel, stop) })
	if r.beforeRun != nil {
		r.beforeRun(rctx, br)
	}
	start := r.Clock.Now()
	// apply records the result in a status; report counts it and says it in an event, once it is recorded.
	var apply func(*v1.BackupRepositoryStatus)
	var report func()
	switch m.Kind {
	case v1.MaintenancePrune:
		res, err := r.prune(rctx, br)
		pr := pruneResult(res, err, r.NodeName, start, r.Clock.Now())
		apply = func(st *v1.BackupRepositoryStatus) { applyPrune(st, pr) }
		report = func() { r.pruneOutcome(br, pr) }
	case v1.MaintenanceCheck:
		pct := readDataPercent(br)
		res, err := r.check(rctx, br, pct)
		cr := checkResult(res, err, pct, r.NodeName, start, r.Clock.Now())
		apply = func(st *v1.BackupRepositoryStatus) { applyCheck(st, cr) }
		report = func() { r.checkOutcome(br, cr) }
	}
	close(stop)
	beat.Wait()
	if errors.Is(context.Cause(rctx), errClaimLost) {
		log.Info("maintenance request withdrawn or given to another agent; result not recorded", "kind", m.Kind, "id", m.ID)
		return
	}
	if ctx.Err() != nil {
		log.Info("agent stopping during maintenance; the request stays for the next start", "kind", m.Kind)
		return
	}
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := r.record(ctx, br, m.ID, apply)
		if err == nil {
			log.Info("maintenance finished", "kind", m.Kind)
			report()
			return
		}
		log.Error(err, "record the result of maintenance; trying again", "in", wait)
		select {
		case <-ctx.Done():
			return
		case <-r.Clock.After(wait):
		}
	}
}

// readDataPercent is the share of packs a check of br reads (the CRD defaults it to 10).
func readDataPercent(br *v1.BackupRepository) int32 {
	if p := br.Spec.CheckReadDataPercent; p != nil && *p >= 1 && *p <= 100 {
		return *p
	}
	return 10
}

func (r *MaintenanceReconciler) open(ctx context.Context, br *v1.BackupRepository) (*repo.Repository, error) {
	var loc v1.BackupStorageLocation
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: br.Spec.StorageLocation}, &loc); err != nil {
		return nil, fmt.Errorf("read storage location %s: %w", br.Spec.StorageLocation, err)
	}
	return bsl.OpenRepository(ctx, r.APIReader, &loc, br.Spec.VolumeNamespace, false)
}

// prune waits for running backups only up to PruneMaxWait: its long phase runs beside them, and a prune
// that cannot get the short exclusive phase in time deletes nothing and is requested again soon.
func (r *MaintenanceReconciler) prune(ctx context.Context, br *v1.BackupRepository) (*prune.Result, error) {
	rp, err := r.open(ctx, br)
	if err != nil {
		return nil, err
	}
	return prune.Run(ctx, rp, prune.Options{MaxWait: r.PruneMaxWait, Lock: lock.Options{WaitTimeout: r.PruneMaxWait}})
}

func (r *MaintenanceReconciler) check(ctx context.Context, br *v1.BackupRepository, percent int32) (*check.Result, error) {
	rp, err := r.open(ctx, br)
	if err != nil {
		return nil, err
	}
	var res *check.Result
	err = lock.WithLock(ctx, rp, lock.Shared, "check", lock.Options{WaitTimeout: r.CheckLockWait}, func(ctx context.Context) error {
		var err error
		res, err = check.Run(ctx, rp, check.Options{ReadDataSubset: float64(percent) / 100})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("check could not finish: %w", err)
	}
	return res, nil
}

// heartbeat writes status.maintenance.heartbeatTime every HeartbeatInterval until stop closes, and cancels
// the run with errClaimLost once the request is no longer this agent's.
func (r *MaintenanceReconciler) heartbeat(ctx context.Context, br *v1.BackupRepository, id string, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	log := ctrl.LoggerFrom(ctx)
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-r.Clock.After(r.HeartbeatInterval):
		}
		lost := false
		err := r.updateStatus(ctx, br, func(st *v1.BackupRepositoryStatus) bool {
			m := st.Maintenance
			if m == nil || m.ID != id || m.Node != r.NodeName {
				lost = true
				return false
			}
			m.HeartbeatTime = ptr.To(metav1.NewTime(r.Clock.Now()))
			return true
		})
		if lost || apierrors.IsNotFound(err) {
			cancel(errClaimLost)
			return
		}
		if err != nil {
			// The next tick tries again; the controller waits several intervals before it gives up on us.
			log.Error(err, "maintenance heartbeat", "repository", br.Name)
		}
	}
}

// record writes the result and clears the request when it is still the one this agent ran.
func (r *MaintenanceReconciler) record(ctx context.Context, br *v1.BackupRepository, id string, apply func(*v1.BackupRepositoryStatus)) error {
	err := r.updateStatus(ctx, br, func(st *v1.BackupRepositoryStatus) bool {
		apply(st)
		if st.Maintenance != nil && st.Maintenance.ID == id {
			st.Maintenance = nil
		}
		return true
	})
	return client.IgnoreNotFound(err)
}

// updateStatus applies mutate to the newest BackupRepository read from the API server and writes it, again on
// every conflict (backups and the controller write the status too). mutate returns false to write nothing.
func (r *MaintenanceReconciler) updateStatus(ctx context.Context, br *v1.BackupRepository, mutate func(*v1.BackupRepositoryStatus) bool) error {
	return updateStatusNewest(ctx, r.APIReader, r.Client, br, "backuprepositories", func(o *v1.BackupRepository) bool { return mutate(&o.Status) })
}

func (r *MaintenanceReconciler) pruneOutcome(br *v1.BackupRepository, pr v1.PruneResult) {
	r.Metrics.prune(pr, pr.Duration.Duration)
	switch {
	case pr.Postponed:
		r.event(br, corev1.EventTypeWarning, ReasonPrunePostponed, "prune deleted nothing and runs again soon: %s", pr.Error)
	case pr.Error != "":
		r.event(br, corev1.EventTypeWarning, ReasonPruneFailed, "prune failed: %s", pr.Error)
	default:
		r.event(br, corev1.EventTypeNormal, ReasonPruneCompleted, "prune freed %d bytes: deleted %d packs (%d repacked), %d snapshots remain; took %s",
			pr.BytesFreed, pr.PacksDeleted, pr.PacksRepacked, pr.Snapshots, pr.Duration.Duration)
	}
}

func (r *MaintenanceReconciler) checkOutcome(br *v1.BackupRepository, cr v1.CheckResult) {
	r.Metrics.check(cr, cr.Duration.Duration)
	switch {
	case cr.Error != "":
		r.event(br, corev1.EventTypeWarning, ReasonCheckFailed, "check failed: %s", cr.Error)
	case !cr.OK:
		r.event(br, corev1.EventTypeWarning, ReasonCheckFoundErrors, "check found %d errors, first: %s", cr.ErrorCount, cr.Errors[0])
	default:
		r.event(br, corev1.EventTypeNormal, ReasonCheckCompleted, "check found no errors; read %d packs (%d bytes); took %s", cr.PacksRead, cr.BytesRead, cr.Duration.Duration)
	}
}

func (r *MaintenanceReconciler) event(br *v1.BackupRepository, eventType, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(br, nil, eventType, reason, "Maintenance", note, args...)
	}
}
