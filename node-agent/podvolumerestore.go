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
	"github.com/straddle-io/straddle/repo/index"
)

// Defaults of PodVolumeRestoreReconciler's tunables.
const (
	// DefaultRestoreMaxAttempts is higher than a backup's: an agent restart while a restored pod is still
	// pending (the folder not there yet) also counts, and a restore rewrites every file, so it is safe to repeat.
	DefaultRestoreMaxAttempts = 3
	// DefaultFolderWait bounds the wait for the kubelet to create the volume's folder: a pod that does not
	// start its init container within it (image pull, unbound claim) is reported rather than waited on forever.
	DefaultFolderWait = 10 * time.Minute
	DefaultFolderPoll = 2 * time.Second
)

// Event reasons recorded on PodVolumeRestores.
const (
	ReasonRestoreStarted   = "RestoreStarted"
	ReasonRestoreRetried   = "RestoreRetried"
	ReasonRestoreWaiting   = "RestoreWaitingForVolume"
	ReasonRestoreCompleted = "RestoreCompleted"
	ReasonRestoreFailed    = "RestoreFailed"
	ReasonRestoreCanceled  = "RestoreCanceled"
	// ReasonRestoreStopped: the controller ended the PodVolumeRestore while it ran (its Restore timed out).
	ReasonRestoreStopped = "RestoreStopped"
)

// restoreState is how far this process took a PodVolumeRestore.
type restoreState int

const (
	// stateTaken: InProgress by this process, waiting for the volume's folder.
	stateTaken restoreState = iota + 1
	// stateRun: the restore ran (or runs) in this process; nothing is left to do here.
	stateRun
)

// PodVolumeRestoreReconciler writes the snapshots its node's PodVolumeRestores name into the restored pods'
// volume folders, one per reconcile, so the controller's MaxConcurrentReconciles is the node's concurrency.
type PodVolumeRestoreReconciler struct {
	// Client reads PodVolumeRestores from the manager's cache (which holds only this node's) and writes them.
	Client client.Client
	// APIReader reads pods, claims, storage locations and Secrets uncached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.Clock
	// NodeName is the node this agent serves; Namespace the install namespace, home of storage locations.
	NodeName, Namespace string
	// HostPodsDir is where the kubelet's pods directory is mounted.
	HostPodsDir string
	// MaxAttempts is how many times a restore is started before an agent restart during it fails it.
	MaxAttempts int
	// FolderWait is how long after the start a missing volume folder fails the restore; FolderPoll how often
	// it is looked for meanwhile.
	FolderWait, FolderPoll time.Duration
	// ProgressInterval is how often status.progress is written while a restore runs.
	ProgressInterval time.Duration
	// LockWait is how long a restore waits while maintenance holds the repository exclusively.
	LockWait time.Duration
	// IndexPaging bounds each volume's repository index in memory (the node-agent's --memory-limit); the
	// zero value keeps it all in memory.
	IndexPaging index.Paging
	// Metrics, when set, count restores, bytes, files and durations.
	Metrics *Metrics

	mu    sync.Mutex
	state map[types.UID]restoreState
	// beforeRestore, when set, runs once the volume folder is found and the progress reporter runs; tests hold
	// restores there.
	beforeRestore func(ctx context.Context, pvr *v1.PodVolumeRestore)
	// onProgress, when set, sees each progress reading after it is stored for the reporter; tests hold a
	// restore there until they saw its progress in the API.
	onProgress func(ctx context.Context, p v1.Progress)
}

// Reconcile takes a new PodVolumeRestore of this node, or one a previous run of this agent left InProgress,
// waits for its volume folder and runs its restore to a terminal phase.
func (r *PodVolumeRestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pvr v1.PodVolumeRestore
	if err := r.Client.Get(ctx, req.NamespacedName, &pvr); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// The cache holds only this node's label; the spec is what the controller meant.
	if pvr.Spec.Node != r.NodeName || pvr.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	st := r.stateOf(pvr.UID)
	if st == stateRun {
		return ctrl.Result{}, nil
	}
	switch pvr.Status.Phase {
	case "", v1.VolumePhaseNew:
		if st == stateTaken {
			// The cache lags behind our own update to InProgress.
			return r.proceed(ctx, &pvr)
		}
		return r.take(ctx, &pvr)
	case v1.VolumePhaseInProgress:
		if st == stateTaken {
			return r.proceed(ctx, &pvr)
		}
		return r.resume(ctx, &pvr)
	}
	return ctrl.Result{}, nil
}

func (r *PodVolumeRestoreReconciler) stateOf(uid types.UID) restoreState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state[uid]
}

func (r *PodVolumeRestoreReconciler) setState(uid types.UID, s restoreState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state == nil {
		r.state = map[types.UID]restoreState{}
	}
	r.state[uid] = s
}

// take moves a new PodVolumeRestore to InProgress. The update carries the resourceVersion read: a conflict
// means someone else moved it, so it is looked at again rather than run twice.
func (r *PodVolumeRestoreReconciler) take(ctx context.Context, pvr *v1.PodVolumeRestore) (ctrl.Result, error) {
	now := metav1.NewTime(r.Clock.Now())
	err := r.updateStatus(ctx, pvr, false, func(st *v1.PodVolumeRestoreStatus) {
		st.Phase, st.StartTimestamp, st.Message = v1.VolumePhaseInProgress, &now, ""
	})
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.setState(pvr.UID, stateTaken)
	return r.proceed(ctx, pvr)
}

// resume handles a PodVolumeRestore of this node InProgress that this process never took: the agent before
// it died while waiting for the volume or writing it. A restore rewrites every file, so it runs again, unless
// it was started MaxAttempts times already.
func (r *PodVolumeRestoreReconciler) resume(ctx context.Context, pvr *v1.PodVolumeRestore) (ctrl.Result, error) {
	attempts := 1
	if n, err := strconv.Atoi(pvr.Annotations[AttemptsAnnotation]); err == nil && n > 0 {
		attempts = n
	}
	if attempts >= r.MaxAttempts {
		msg := fmt.Sprintf("node-agent restarted during the restore %d times; not trying again (delete the restored pod's PodVolumeRestore's Restore and restore again)", attempts)
		if err := r.finish(ctx, pvr, nil, errors.New(msg)); err != nil {
			return ctrl.Result{}, err
		}
		r.setState(pvr.UID, stateRun)
		return ctrl.Result{}, nil
	}
	// The count is written before the run, with the resourceVersion read: a crash during this run is
	// counted, and a conflict means someone else moved the object.
	upd := pvr.DeepCopy()
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[AttemptsAnnotation] = strconv.Itoa(attempts + 1)
	if err := r.Client.Update(ctx, upd); apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	} else if err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	r.setState(pvr.UID, stateTaken)
	r.event(upd, corev1.EventTypeNormal, ReasonRestoreRetried, "node-agent restarted during the restore: starting attempt %d of %d", attempts+1, r.MaxAttempts)
	return r.proceed(ctx, upd)
}

// proceed restores the volume once its folder exists. While it does not, the PodVolumeRestore is looked at
// again every FolderPoll (the kubelet creates the folder when the pod starts its init container), until
// FolderWait after the start.
func (r *PodVolumeRestoreReconciler) proceed(ctx context.Context, pvr *v1.PodVolumeRestore) (ctrl.Result, error) {
	dir, err := r.volumeDir(ctx, pvr)
	var waitErr *folderMissingError
	if errors.As(err, &waitErr) {
		started := pvr.CreationTimestamp.Time
		if pvr.Status.StartTimestamp != nil {
			started = pvr.Status.StartTimestamp.Time
		}
		if waited := r.Clock.Since(started); waited >= r.FolderWait {
			ferr := fmt.Errorf("the volume folder never appeared on node %s within %s: %w (did the pod %s/%s start on this node? see its events)",
				r.NodeName, r.FolderWait, err, pvr.Spec.Pod.Namespace, pvr.Spec.Pod.Name)
			r.setState(pvr.UID, stateRun)
			r.Metrics.restoreStarted()(nil, ferr)
			return ctrl.Result{}, r.finishRetrying(ctx, pvr, nil, ferr)
		}
		if pvr.Status.Message == "" {
			r.noteWaiting(ctx, pvr, waitErr)
		}
		// Looked at again: nothing watched tells us when the kubelet creates the folder.
		return ctrl.Result{RequeueAfter: r.FolderPoll}, nil
	}
	r.setState(pvr.UID, stateRun)
	r.run(ctx, pvr, dir, err)
	return ctrl.Result{}, nil
}

// noteWaiting says in status.message and an event what the restore waits for, once.
func (r *PodVolumeRestoreReconciler) noteWaiting(ctx context.Context, pvr *v1.PodVolumeRestore, waitErr *folderMissingError) {
	msg := "waiting for the volume folder: " + waitErr.Error()
	if err := r.updateStatus(ctx, pvr, true, func(st *v1.PodVolumeRestoreStatus) { st.Message = msg }); err != nil {
		// Only information: the next look tries again.
		ctrl.LoggerFrom(ctx).Error(err, "note the wait for the volume folder", "podvolumerestore", pvr.Name)
		return
	}
	r.event(pvr, corev1.EventTypeNormal, ReasonRestoreWaiting, "%s", msg)
}

// run restores the volume into dir while reporting progress, then records the outcome. findErr is why dir
// could not be resolved, if it could not. When the agent is stopping, the PodVolumeRestore stays InProgress
// for the next start of the agent to retry.
func (r *PodVolumeRestoreReconciler) run(ctx context.Context, pvr *v1.PodVolumeRestore, dir string, findErr error) {
	log := ctrl.LoggerFrom(ctx)
	measured := r.Metrics.restoreStarted()
	if findErr != nil {
		measured(nil, findErr)
		_ = r.finishRetrying(ctx, pvr, nil, findErr)
		return
	}
	r.event(pvr, corev1.EventTypeNormal, ReasonRestoreStarted, "restoring snapshot %s into volume %s of pod %s/%s on node %s",
		shortID(pvr.Spec.SnapshotID), pvr.Spec.Volume, pvr.Spec.Pod.Namespace, pvr.Spec.Pod.Name, r.NodeName)
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progressBox{}
	var reporter sync.WaitGroup
	stop := make(chan struct{})
	reporter.Go(func() {
		reportProgress(rctx, r.Client, pvr, r.ProgressInterval, prog, func(o *v1.PodVolumeRestore, p v1.Progress) { o.Status.Progress = p },
			func(o *v1.PodVolumeRestore) error { return endedIf(o.Status.Phase, o.Status.Message) }, cancel, stop)
	})
	// The wait for the folder is over; its note would mislead while the data is written. The object read
	// may predate the note (the cache lags), so it is cleared on the newest.
	var ended *endedError
	if err := r.updateStatus(ctx, pvr, true, func(st *v1.PodVolumeRestoreStatus) { st.Message = "" }); errors.As(err, &ended) {
		cancel(ended)
	} else if err != nil {
		log.Error(err, "clear the note of the wait for the volume folder", "podvolumerestore", pvr.Name)
	}
	if r.beforeRestore != nil {
		r.beforeRestore(rctx, pvr)
	}
	progress := prog.set
	if r.onProgress != nil {
		progress = func(p v1.Progress) {
			prog.set(p)
			r.onProgress(rctx, p)
		}
	}
	res, err := r.restore(rctx, pvr, dir, progress)
	close(stop)
	reporter.Wait()
	deleted := errors.Is(context.Cause(rctx), errDeleted)
	if deleted {
		measured(nil, errDeleted)
		log.Info("restore canceled: its PodVolumeRestore was deleted", "podvolumerestore", pvr.Name)
		r.event(pvr, corev1.EventTypeWarning, ReasonRestoreCanceled, "restore canceled: the PodVolumeRestore was deleted")
		return
	}
	if errors.As(context.Cause(rctx), &ended) {
		measured(nil, ended)
		log.Info("restore stopped: its PodVolumeRestore was ended by the controller", "podvolumerestore", pvr.Name, "phase", ended.phase, "message", ended.message)
		r.event(pvr, corev1.EventTypeWarning, ReasonRestoreStopped, "restore stopped: the PodVolumeRestore was %s by the controller: %s", ended.phase, ended.message)
		return
	}
	measured(res, err)
	if ctx.Err() != nil {
		log.Info("agent stopping during a restore; the next start retries it", "podvolumerestore", pvr.Name)
		return
	}
	_ = r.finishRetrying(ctx, pvr, res, err)
}

// finishRetrying records the outcome, trying again while the API server is unreachable rather than leave the
// PodVolumeRestore InProgress until the agent restarts. It returns an error only when ctx ends first.
func (r *PodVolumeRestoreReconciler) finishRetrying(ctx context.Context, pvr *v1.PodVolumeRestore, res *restoreResult, restoreErr error) error {
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		ferr := r.finish(ctx, pvr, res, restoreErr)
		if ferr == nil {
			return nil
		}
		ctrl.LoggerFrom(ctx).Error(ferr, "record the outcome of a restore; trying again", "podvolumerestore", pvr.Name, "in", wait)
		select {
		case <-ctx.Done():
			// The next start of the agent finds it InProgress and retries it.
			return ctx.Err()
		case <-r.Clock.After(wait):
		}
	}
}

// finish writes the terminal status: Completed with the final progress, or Failed with err's message.
func (r *PodVolumeRestoreReconciler) finish(ctx context.Context, pvr *v1.PodVolumeRestore, res *restoreResult, restoreErr error) error {
	now := metav1.NewTime(r.Clock.Now())
	err := r.updateStatus(ctx, pvr, true, func(st *v1.PodVolumeRestoreStatus) {
		st.CompletionTimestamp = &now
		if restoreErr != nil {
			st.Phase, st.Message = v1.VolumePhaseFailed, restoreErr.Error()
			return
		}
		st.Phase, st.Message, st.Progress = v1.VolumePhaseCompleted, res.message(), res.Progress
	})
	var ended *endedError
	if errors.As(err, &ended) {
		// The controller's end stands. A restore that completed here wrote its marker, so the pod starts with
		// whole data; the Restore still counts the volume as the controller ended it.
		r.event(pvr, corev1.EventTypeWarning, ReasonRestoreStopped, "restore ended here after the PodVolumeRestore was %s by the controller (%s); its outcome (%s) is not recorded",
			ended.phase, ended.message, outcome(restoreErr))
		return nil
	}
	if err != nil {
		return client.IgnoreNotFound(err)
	}
	if restoreErr != nil {
		r.event(pvr, corev1.EventTypeWarning, ReasonRestoreFailed, "restore failed: %v", restoreErr)
		return nil
	}
	r.event(pvr, corev1.EventTypeNormal, ReasonRestoreCompleted, "snapshot %s restored: %d bytes in %d files, %d warnings",
		shortID(pvr.Spec.SnapshotID), res.Progress.BytesDone, res.Progress.FilesDone, len(res.Warnings))
	return nil
}

func (r *PodVolumeRestoreReconciler) event(pvr *v1.PodVolumeRestore, eventType, reason, note string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(pvr, nil, eventType, reason, "Restore", note, args...)
	}
}

func shortID(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}

// outcome is "completed", or the error's message.
func outcome(err error) string {
	if err == nil {
		return "completed"
	}
	return "failed: " + err.Error()
}
