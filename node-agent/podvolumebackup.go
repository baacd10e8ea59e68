// Package nodeagent is the node-agent's work: it takes the PodVolumeBackups of its own node, finds each
// volume in the kubelet's pods directory, and backs it up into the repository of the pod's namespace; and it
// takes its node's PodVolumeRestores, waits for each restored pod's volume folder, and writes the snapshot
// back into it, then the marker the pod's restore-wait init container waits for. It also runs repository
// maintenance (prune, check) that the controller requests in a BackupRepository's status: one agent claims
// each request (maintenance.go). Maintenance runs in the node-agent rather than in a Job because the agent
// already holds the storage credentials and the engine and runs under a memory limit sized for it; a Job
// would need its image pulled (offline clusters mirror it), a job controller, and the credential plumbing
// twice.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/index"
)

// AttemptsAnnotation counts how many times node-agents started a PodVolumeBackup; an agent that finds its
// node's PodVolumeBackup InProgress after a restart bumps it before running the backup again.
const AttemptsAnnotation = "straddle.io/attempts"

// FurthestAnnotation holds the most bytes any attempt of a PodVolumeBackup had read when its agent died: a
// restart after which the backup got further than that is progress, not a crash loop, and is not held against
// the volume.
const FurthestAnnotation = "straddle.io/furthest-bytes"

// Defaults of PodVolumeBackupReconciler's tunables.
const (
	// DefaultMaxAttempts runs a backup once more after the agent died during it: the checkpointed index
	// makes that retry cheap. Restarts after which the backup read further than ever before do not count
	// against it (rollouts, drains), so only a volume that kills the agent again before it gets further is
	// failed rather than looped on.
	DefaultMaxAttempts        = 2
	DefaultCheckpointInterval = time.Minute
	DefaultProgressInterval   = 2 * time.Second
	DefaultLockWait           = 10 * time.Minute
)

// Event reasons recorded on PodVolumeBackups.
const (
	ReasonStarted = "BackupStarted"
	// ReasonRetried has its own reason: the events API folds events of one reason into a series, and the
	// retry's note must not be lost under the start's.
	ReasonRetried   = "BackupRetried"
	ReasonCompleted = "BackupCompleted"
	ReasonFailed    = "BackupFailed"
	ReasonCanceled  = "BackupCanceled"
	// ReasonStopped: the controller ended the PodVolumeBackup while it ran (its Backup timed out).
	ReasonStopped = "BackupStopped"
)

// PodVolumeBackupReconciler backs up the volumes its node's PodVolumeBackups name, one per reconcile, so the
// controller's MaxConcurrentReconciles is the node's concurrency.
type PodVolumeBackupReconciler struct {
	// Client reads PodVolumeBackups from the manager's cache (which holds only this node's) and writes them.
	Client client.Client
	// APIReader reads pods, claims, storage locations and Secrets uncached, so none of them is watched
	// cluster-wide and no Secret sits in memory.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.Clock
	// NodeName is the node this agent serves; Namespace the install namespace, home of storage locations.
	NodeName, Namespace string
	// HostPodsDir is where the kubelet's pods directory is mounted.
	HostPodsDir string
	// MaxAttempts is how many times a backup is started before an agent restart during it fails it.
	MaxAttempts int
	// CheckpointInterval is how often a running backup indexes what it stored, for a retry to reuse.
	CheckpointInterval time.Duration
	// ProgressInterval is how often status.progress is written while a backup runs.
	ProgressInterval time.Duration
	// LockWait is how long a backup waits while maintenance holds the repository exclusively.
	LockWait time.Duration
	// IndexPaging bounds each volume's repository index in memory (the node-agent's --memory-limit); the
	// zero value keeps it all in memory.
	IndexPaging index.Paging
	// Metrics, when set, count backups, bytes, files and durations.
	Metrics *Metrics

	mu sync.Mutex
	// started holds the PodVolumeBackups this process started: one of them seen InProgress is this
	// process's own (perhaps through a cache that lags), never one a dead agent left.
	started map[types.UID]bool
	// beforeBackup, when set, runs once a backup is InProgress and its progress reporter runs; tests hold
	// backups there.
	beforeBackup func(ctx context.Context, pvb *v1.PodVolumeBackup)
	// onProgress, when set, sees each progress reading after it is stored for the reporter; tests hold a
	// backup there until they saw its progress in the API.
	onProgress func(ctx context.Context, p backup.Progress)
}

// Reconcile takes a new PodVolumeBackup of this node, or one a previous run of this agent left InProgress,
// and runs its backup to a terminal phase.
func (r *PodVolumeBackupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pvb v1.PodVolumeBackup
	if err := r.Client.Get(ctx, req.NamespacedName, &pvb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// The cache holds only this node's label; the spec is what the controller meant.
	if pvb.Spec.Node != r.NodeName || pvb.DeletionTimestamp != nil || r.startedHere(pvb.UID) {
		return ctrl.Result{}, nil
	}
	if pvb.Status.Phase != "" && pvb.Status.Phase != v1.VolumePhaseNew && pvb.Status.Phase != v1.VolumePhaseInProgress {
		// Ended: nothing to do, and no reason to read its Backup below.
		return ctrl.Result{}, nil
	}
	if synced, err := r.synced(ctx, &pvb); err != nil || synced {
		return ctrl.Result{}, err
	}
	switch pvb.Status.Phase {
	case "", v1.VolumePhaseNew:
		return r.take(ctx, &pvb)
	case v1.VolumePhaseInProgress:
		return r.resume(ctx, &pvb)
	}
	return ctrl.Result{}, nil
}

// synced tells whether pvb is a record the controller copied from storage (it or its Backup carries the
// synced annotation): another cluster ran that backup, and running it here would write a second snapshot of
// a pod this cluster may not even have. The controller leaves the node label off such records, so this is
// the second guard.
func (r *PodVolumeBackupReconciler) synced(ctx context.Context, pvb *v1.PodVolumeBackup) (bool, error) {
	if _, ok := pvb.Annotations[v1.SyncedFromAnnotation]; ok {
		return true, nil
	}
	name := pvb.Labels[v1.BackupLabel]
	if name == "" {
		return false, nil
	}
	var b v1.Backup
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: pvb.Namespace, Name: name}, &b)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read backup %s of PodVolumeBackup %s: %w", name, pvb.Name, err)
	}
	_, ok := b.Annotations[v1.SyncedFromAnnotation]
	return ok, nil
}

func (r *PodVolumeBackupReconciler) startedHere(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[uid]
}

func (r *PodVolumeBackupReconciler) markStarted(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started == nil {
		r.started = map[types.UID]bool{}
	}
	r.started[uid] = true
}

// take moves a new PodVolumeBackup to InProgress and runs it. The update carries the resourceVersion read:
// a conflict means someone else moved it, so it is looked at again rather than run twice.
func (r *PodVolumeBackupReconciler) take(ctx context.Context, pvb *v1.PodVolumeBackup) (ctrl.Result, error) {
	now := metav1.NewTime(r.Clock.Now())
	err := r.updateStatus(ctx, pvb, false, func(st *v1.PodVolumeBackupStatus) {
		st.Phase, st.StartTimestamp, st.Message = v1.VolumePhaseInProgress, &now, ""
	})
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.markStarted(pvb.UID)
	r.run(ctx, pvb)
	return ctrl.Result{}, nil
}

// resume handles a PodVolumeBackup of this node InProgress that this process never started: the agent
// before it died during the backup. It runs again, unless it already ran MaxAttempts times.
func (r *PodVolumeBackupReconciler) resume(ctx context.Context, pvb *v1.PodVolumeBackup) (ctrl.Result, error) {
	attempts := 1
	if n, err := strconv.Atoi(pvb.Annotations[AttemptsAnnotation]); err == nil && n > 0 {
		attempts = n
	}
	furthest, _ := strconv.ParseInt(pvb.Annotations[FurthestAnnotation], 10, 64)
	progressed := pvb.Status.Progress.BytesDone > furthest
	if attempts >= r.MaxAttempts && !progressed {
		msg := fmt.Sprintf("node-agent restarted during the backup %d times, the last time before the backup got further than the time before; not trying again", attempts)
		if err := r.finish(ctx, pvb, nil, errors.New(msg)); err != nil {
			return ctrl.Result{}, err
		}
		r.markStarted(pvb.UID)
		return ctrl.Result{}, nil
	}
	// The count is written before the run, with the resourceVersion read: a crash during this run is
	// counted, and a conflict means someone else moved the object.
	upd := pvb.DeepCopy()
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[AttemptsAnnotation] = strconv.Itoa(attempts + 1)
	upd.Annotations[FurthestAnnotation] = strconv.FormatInt(max(furthest, pvb.Status.Progress.BytesDone), 10)
	if err := r.Client.Update(ctx, upd); apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	} else if err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.markStarted(pvb.UID)
	r.event(upd, corev1.EventTypeNormal, ReasonRetried, "node-agent restarted during the backup: starting attempt %d of %d", attempts+1, r.MaxAttempts)
	r.run(ctx, upd)
	return ctrl.Result{}, nil
}

// errDeleted cancels a backup whose PodVolumeBackup was deleted.
var errDeleted = errors.New("the PodVolumeBackup was deleted")

// run backs up the volume while reporting progress, then records the outcome. When the agent is stopping,
// the PodVolumeBackup stays InProgress for the next start of the agent to retry.
func (r *PodVolumeBackupReconciler) run(ctx context.Context, pvb *v1.PodVolumeBackup) {
	log := ctrl.LoggerFrom(ctx)
	r.event(pvb, corev1.EventTypeNormal, ReasonStarted, "backing up volume %s of pod %s/%s on node %s", pvb.Spec.Volume, pvb.Spec.Pod.Namespace, pvb.Spec.Pod.Name, r.NodeName)
	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progressBox{}
	var reporter sync.WaitGroup
	stop := make(chan struct{})
	reporter.Go(func() {
		reportProgress(bctx, r.Client, pvb, r.ProgressInterval, prog, func(o *v1.PodVolumeBackup, p v1.Progress) { o.Status.Progress = p },
			func(o *v1.PodVolumeBackup) error { return endedIf(o.Status.Phase, o.Status.Message) }, cancel, stop)
	})

	measured := r.Metrics.started()
	if r.beforeBackup != nil {
		r.beforeBackup(bctx, pvb)
	}
	progress := prog.store
	if r.onProgress != nil {
		progress = func(p backup.Progress) {
			prog.store(p)
			r.onProgress(bctx, p)
		}
	}
	res, err := r.backup(bctx, pvb, progress)
	close(stop)
	reporter.Wait()
	deleted := errors.Is(context.Cause(bctx), errDeleted)
	var ended *endedError
	switch {
	case deleted:
		measured(nil, errDeleted)
	case errors.As(context.Cause(bctx), &ended):
		measured(nil, ended)
	default:
		measured(res, err)
	}

	if deleted {
		log.Info("backup canceled: its PodVolumeBackup was deleted", "podvolumebackup", pvb.Name)
		r.event(pvb, corev1.EventTypeWarning, ReasonCanceled, "backup canceled: the PodVolumeBackup was deleted")
		return
	}
	if ended != nil {
		// What reached storage is indexed (the writer's last checkpoint), so nothing uploaded is lost.
		log.Info("backup stopped: its PodVolumeBackup was ended by the controller", "podvolumebackup", pvb.Name, "phase", ended.phase, "message", ended.message)
		r.event(pvb, corev1.EventTypeWarning, ReasonStopped, "backup stopped: the PodVolumeBackup was %s by the controller: %s", ended.phase, ended.message)
		return
	}
	if ctx.Err() != nil {
		log.Info("agent stopping during a backup; the next start retries it", "podvolumebackup", pvb.Name)
		return
	}
	// The outcome is known only here: keep trying to record it while the API server is unreachable, rather
	// than leave the PodVolumeBackup InProgress until the agent restarts.
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		ferr := r.finish(ctx, pvb, res, err)
		if ferr == nil {
			return
		}
		log.Error(ferr, "record the outcome of a backup; trying again", "podvolumebackup", pvb.Name, "in", wait)
		select {
		case <-ctx.Done():
			// The next start of the agent finds it InProgress and retries it.
			return
		case <-r.Clock.After(wait):
		}
	}
}

// finish writes the terminal status: Completed with the result, or Failed with err's message.
func (r *PodVolumeBackupReconciler) finish(ctx context.Context, pvb *v1.PodVolumeBackup, res *volumeResult, backupErr error) error {
	now := metav1.NewTime(r.Clock.Now())
	err := r.updateStatus(ctx, pvb, true, func(st *v1.PodVolumeBackupStatus) {
		st.CompletionTimestamp = &now
		if backupErr != nil {
			st.Phase, st.Message = v1.VolumePhaseFailed, backupErr.Error()
			return
		}
		st.Phase, st.Message = v1.VolumePhaseCompleted, ""
		st.SnapshotID, st.Stats, st.Warnings, st.Progress = res.SnapshotID, res.Stats, res.Warnings, res.Progress
	})
	var ended *endedError
	if errors.As(err, &ended) {
		// The controller's end stands; a snapshot saved meanwhile carries the backup's tag, so deleting the
		// Backup removes it.
		what := "its failure"
		if backupErr == nil {
			what = "its snapshot " + res.SnapshotID
		}
		r.event(pvb, corev1.EventTypeWarning, ReasonStopped, "backup ended here after the PodVolumeBackup was %s by the controller (%s); %s is not recorded", ended.phase, ended.message, what)
		return nil
	}
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	if backupErr != nil {
		r.event(pvb, corev1.EventTypeWarning, ReasonFailed, "backup failed: %v", backupErr)
		return nil
	}
	r.event(pvb, corev1.EventTypeNormal, ReasonCompleted, "snapshot %s: %d bytes in %d files, %d bytes added to the repository, %d warnings",
		res.SnapshotID, res.Progress.BytesDone, res.Progress.FilesDone, res.Stats.BytesAdded, len(res.Warnings))
	return nil
}

func (r *PodVolumeBackupReconciler) event(pvb *v1.PodVolumeBackup, eventType, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(pvb, nil, eventType, reason, "Backup", note, args...)
	}
}
