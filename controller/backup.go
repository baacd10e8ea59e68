package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/hooks"
	"github.com/straddle-io/straddle/controller/resources"
)

// BackupFinalizer keeps a deleted Backup until its snapshots and stored objects are removed.
const BackupFinalizer = "straddle.io/backup-cleanup"

// Defaults of BackupReconciler.
const (
	DefaultMaxVolumesInFlight = 64
	DefaultBackupTTL          = 720 * time.Hour
	DefaultCapacityPoll       = 5 * time.Second
)

// ConditionVolumesPlanned is True once every volume a backup chose has its PodVolumeBackup. Until then the
// plan is computed again from the pods on each reconcile (so a restarted controller loses nothing); after it,
// the pods are no longer read and the set of volumes is fixed.
const ConditionVolumesPlanned = "VolumesPlanned"

// BackupReconciler drives Backups: it chooses the pod volumes, creates one PodVolumeBackup per volume for the
// node-agents (no more than MaxVolumesInFlight unfinished ones cluster-wide), follows them, writes the
// backup's resources and metadata to the storage location, and on deletion removes the backup's snapshots
// and stored objects.
type BackupReconciler struct {
	Client client.Client
	// APIReader reads Secrets uncached (the cache holds none), and the backup's own PodVolumeBackups while
	// it plans, so a cache that lags behind those just created never makes a backup finish early.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Events    events.EventRecorder
	// Metrics counts what ends (nil: nothing is counted).
	Metrics *Metrics
	// Namespace is the install namespace: its Backups are served, and their PodVolumeBackups, storage
	// locations and BackupRepositories live there.
	Namespace string
	// DefaultVolumesToFsBackup is the install's default for Backups that do not set it.
	DefaultVolumesToFsBackup bool
	// DefaultExcludedVolumes are volume names default-all leaves out unless a pod's opt-in annotation names
	// them (VolumeDefaults.Excluded).
	DefaultExcludedVolumes []string
	// MaxVolumesInFlight caps unfinished PodVolumeBackups cluster-wide (DefaultMaxVolumesInFlight if zero).
	MaxVolumesInFlight int
	// CapacityPoll is how soon a backup held back by the cap looks again (DefaultCapacityPoll if zero).
	CapacityPoll time.Duration
	// Resources lists the namespaces' objects for the backup's archive.
	Resources *resources.Collector
	// Exec runs the pods' backup hooks; without it every hook fails.
	Exec hooks.Executor
	// DefaultTimeout bounds Backups that set no spec.timeout (DefaultTimeout if zero; negative: no bound).
	DefaultTimeout time.Duration

	// reported remembers the PodVolumeBackups whose end was announced as an event, so each is announced once
	// per controller process.
	reported sync.Map
	// created holds the PodVolumeBackups this process created that its cache may not show yet, for the cap.
	created createdNotCached
}

// SetupWithManager registers the reconciler. PodVolumeBackups are mapped to their Backup by the backup label,
// so the Backup's status follows each volume's.
func (r *BackupReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.Backup{}).
		Watches(&v1.PodVolumeBackup{}, enqueueByLabel(v1.BackupLabel, r.Namespace)).
		Named("backup").Complete(r)
}

// Reconcile moves one Backup along: New → InProgress → Completed, PartiallyFailed or Failed; and Deleting
// once deleted.
func (r *BackupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace {
		return ctrl.Result{}, nil
	}
	var b v1.Backup
	if err := r.Client.Get(ctx, req.NamespacedName, &b); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !b.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, &b)
	}
	if !controllerutil.ContainsFinalizer(&b, BackupFinalizer) {
		controllerutil.AddFinalizer(&b, BackupFinalizer)
		// The update comes back as an event, which reconciles again with the finalizer in place.
		return r.requeueOnConflict(r.Client.Update(ctx, &b), "add the finalizer to backup %s", b.Name)
	}
	if exp := b.Status.Expiration; exp != nil && !r.Clock.Now().Before(exp.Time) {
		r.Events.Eventf(&b, nil, corev1.EventTypeNormal, "Expired", "Delete", "backup expired at %s; deleting it", exp.UTC().Format(time.RFC3339))
		return ctrl.Result{}, client.IgnoreNotFound(r.Client.Delete(ctx, &b))
	}
	if _, synced := b.Annotations[v1.SyncedFromAnnotation]; synced {
		// Another cluster ran it; the sync wrote its final status. Only its expiry and deletion are ours.
		return r.untilExpiry(&b), nil
	}
	switch b.Status.Phase {
	case "", v1.PhaseNew:
		return r.start(ctx, &b)
	case v1.PhaseInProgress:
		return r.progress(ctx, &b)
	default:
		// Terminal: nothing changes until it expires.
		return r.untilExpiry(&b), nil
	}
}

// start stamps the start and expiration, pins the storage location in the spec (so the backup is found and
// deleted in the same place even if the default location changes later), and moves to InProgress.
func (r *BackupReconciler) start(ctx context.Context, b *v1.Backup) (ctrl.Result, error) {
	if len(b.Name) > maxNameLength {
		return r.fail(ctx, b, fmt.Sprintf("backup name %q is longer than %d characters: it must fit in the %s label of its PodVolumeBackups", b.Name, maxNameLength, v1.BackupLabel))
	}
	loc, problem, err := r.location(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem == "" && loc.Status.Phase == v1.LocationUnavailable {
		problem = fmt.Sprintf("storage location %s is unavailable: %s", loc.Name, loc.Status.Message)
	}
	if problem != "" {
		return r.fail(ctx, b, problem)
	}
	if b.Spec.StorageLocation == "" {
		b.Spec.StorageLocation = loc.Name
		return r.requeueOnConflict(r.Client.Update(ctx, b), "record storage location of backup %s", b.Name)
	}
	now := metav1.NewTime(r.Clock.Now())
	ttl := DefaultBackupTTL
	if b.Spec.TTL != nil {
		ttl = b.Spec.TTL.Duration
	}
	exp := metav1.NewTime(now.Add(ttl))
	b.Status.Phase = v1.PhaseInProgress
	b.Status.StartTimestamp = &now
	b.Status.Expiration = &exp
	if err := r.Client.Status().Update(ctx, b); err != nil {
		return r.requeueOnConflict(err, "start backup %s", b.Name)
	}
	r.Events.Eventf(b, nil, corev1.EventTypeNormal, "Started", "Start", "backup started, storage location %s, expires %s", loc.Name, exp.UTC().Format(time.RFC3339))
	return ctrl.Result{}, nil
}

// progress plans and creates the PodVolumeBackups still missing, follows those that exist, and finishes the
// backup once every one is terminal.
func (r *BackupReconciler) progress(ctx context.Context, b *v1.Backup) (ctrl.Result, error) {
	loc, problem, err := r.location(ctx, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != "" {
		return r.fail(ctx, b, problem)
	}
	planned := meta.IsStatusConditionTrue(b.Status.Conditions, ConditionVolumesPlanned)
	pvbs, err := r.podVolumeBackups(ctx, r.Client, b)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The cache may not show PodVolumeBackups created a moment ago: while planning, and whenever it shows
	// fewer than were planned, ask the API server, so a lagging cache never makes a backup finish early.
	if !planned || len(pvbs) < b.Status.VolumesTotal {
		if pvbs, err = r.podVolumeBackups(ctx, r.APIReader, b); err != nil {
			return ctrl.Result{}, err
		}
	}
	before := b.Status.DeepCopy()
	deadline, bounded := r.deadline(b)
	if bounded && !r.Clock.Now().Before(deadline) && (!planned || anyUnfinished(pvbs)) {
		// Fail them as they are now, not as a lagging cache shows them.
		if pvbs, err = r.podVolumeBackups(ctx, r.APIReader, b); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.timeOut(ctx, b, pvbs); err != nil {
			return r.requeueOnConflict(err, "backup %s", b.Name)
		}
		planned = true
		if pvbs, err = r.podVolumeBackups(ctx, r.APIReader, b); err != nil {
			return ctrl.Result{}, err
		}
	}
	if err := r.failVolumesOfFailedPods(ctx, b, pvbs); err != nil {
		return r.requeueOnConflict(err, "backup %s", b.Name)
	}
	remaining, lost := 0, 0
	var waiting map[string]bool
	if planned {
		// Deleted by someone before they finished: they will never report, so they count as failed.
		lost = max(b.Status.VolumesTotal-len(pvbs), 0)
	} else {
		var problem string
		remaining, waiting, problem, err = r.createPodVolumeBackups(ctx, b, loc, pvbs)
		if err != nil {
			return r.requeueOnConflict(err, "plan backup %s", b.Name)
		}
		if problem != "" {
			return r.fail(ctx, b, problem)
		}
		if remaining == 0 {
			meta.SetStatusCondition(&b.Status.Conditions, metav1.Condition{Type: ConditionVolumesPlanned, Status: metav1.ConditionTrue,
				Reason: "AllCreated", Message: "every chosen volume has its PodVolumeBackup", ObservedGeneration: b.Generation})
		}
		if pvbs, err = r.podVolumeBackups(ctx, r.APIReader, b); err != nil {
			return ctrl.Result{}, err
		}
		if err := r.failVolumesOfFailedPods(ctx, b, pvbs); err != nil {
			return r.requeueOnConflict(err, "backup %s", b.Name)
		}
	}
	if err := r.postHooksDue(ctx, b, pvbs, waiting); err != nil {
		return r.requeueOnConflict(err, "backup %s", b.Name)
	}
	unfinished := r.summarize(b, pvbs, remaining, lost)
	if unfinished == 0 {
		return r.finish(ctx, b, loc, pvbs)
	}
	if !equality.Semantic.DeepEqual(before, &b.Status) {
		if err := r.Client.Status().Update(ctx, b); err != nil {
			return r.requeueOnConflict(err, "record progress of backup %s", b.Name)
		}
	}
	// PodVolumeBackup changes wake this backup through the watch; only its timeout needs a timer.
	var wake time.Duration
	if left := deadline.Sub(r.Clock.Now()); bounded && left > 0 {
		wake = left
	}
	if remaining > 0 {
		// Held back by the cluster-wide cap: the PodVolumeBackups that free room belong to other backups and
		// do not wake this one, so look again shortly.
		wake = soonest(wake, r.capacityPoll())
	}
	return ctrl.Result{RequeueAfter: wake}, nil
}

// summarize fills the status from the PodVolumeBackups (plus remaining not yet created, and lost ones that
// were deleted before they ended) and announces volumes that ended; it returns how many volumes are not
// terminal yet.
func (r *BackupReconciler) summarize(b *v1.Backup, pvbs []v1.PodVolumeBackup, remaining, lost int) int {
	var p v1.Progress
	completed, failed := 0, lost
	for i := range pvbs {
		pvb := &pvbs[i]
		p.BytesDone += pvb.Status.Progress.BytesDone
		p.BytesTotal += pvb.Status.Progress.BytesTotal
		p.FilesDone += pvb.Status.Progress.FilesDone
		p.FilesTotal += pvb.Status.Progress.FilesTotal
		switch pvb.Status.Phase {
		case v1.VolumePhaseCompleted:
			completed++
		case v1.VolumePhaseFailed, v1.VolumePhaseCanceled:
			failed++
		default:
			continue
		}
		r.announce(b, pvb)
	}
	b.Status.Progress = p
	b.Status.VolumesTotal = len(pvbs) + remaining + lost
	b.Status.VolumesCompleted = completed
	b.Status.VolumesFailed = failed
	return b.Status.VolumesTotal - completed - failed
}

func (r *BackupReconciler) announce(b *v1.Backup, pvb *v1.PodVolumeBackup) {
	if _, seen := r.reported.LoadOrStore(pvb.UID, true); seen {
		return
	}
	what := fmt.Sprintf("volume %s of pod %s/%s on node %s", pvb.Spec.Volume, pvb.Spec.Pod.Namespace, pvb.Spec.Pod.Name, pvb.Spec.Node)
	pod := podRef(pvb.Spec.Pod)
	if pvb.Status.Phase == v1.VolumePhaseCompleted {
		r.Events.Eventf(b, pvb, corev1.EventTypeNormal, "VolumeCompleted", "BackupVolume", "%s: snapshot %s, %d bytes read, %d added",
			what, pvb.Status.SnapshotID, pvb.Status.Stats.BytesRead, pvb.Status.Stats.BytesAdded)
		r.Events.Eventf(pod, pvb, corev1.EventTypeNormal, "VolumeBackedUp", "BackupVolume", "volume %s backed up by backup %s: snapshot %s",
			pvb.Spec.Volume, b.Name, pvb.Status.SnapshotID)
		return
	}
	r.Events.Eventf(b, pvb, corev1.EventTypeWarning, "VolumeFailed", "BackupVolume", "%s %s: %s", what, pvb.Status.Phase, pvb.Status.Message)
	r.Events.Eventf(pod, pvb, corev1.EventTypeWarning, "VolumeBackupFailed", "BackupVolume", "volume %s not backed up by backup %s: %s %s",
		pvb.Spec.Volume, b.Name, pvb.Status.Phase, pvb.Status.Message)
}

// announceSkips tells each pod, once the backup has ended, which of its volumes the backup skipped and why:
// the pod's events are where its owner looks. One event per pod: the events API folds events of the same
// object, reason and related object into one series that keeps only the first message.
func (r *BackupReconciler) announceSkips(b *v1.Backup) {
	type podKey struct{ namespace, name string }
	var order []podKey
	byPod := map[podKey][]v1.SkippedVolume{}
	for _, s := range b.Status.SkippedVolumes {
		k := podKey{s.Namespace, s.Pod}
		if _, seen := byPod[k]; !seen {
			order = append(order, k)
		}
		byPod[k] = append(byPod[k], s)
	}
	for _, k := range order {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: k.namespace, Name: k.name}}
		r.Events.Eventf(pod, b, corev1.EventTypeNormal, "VolumeSkipped", "BackupVolume", "%s", skipNote(b.Name, byPod[k]))
	}
}

// skipNote says which of one pod's volumes a backup skipped and why.
func skipNote(backup string, skips []v1.SkippedVolume) string {
	if len(skips) == 1 {
		what := "volumes"
		if skips[0].Volume != "" {
			what = "volume " + skips[0].Volume
		}
		return fmt.Sprintf("%s skipped by backup %s: %s", what, backup, skips[0].Reason)
	}
	names := make([]string, 0, len(skips))
	reasons := make([]string, 0, len(skips))
	for _, s := range skips {
		names = append(names, s.Volume)
		reasons = append(reasons, s.Volume+": "+s.Reason)
	}
	return fmt.Sprintf("volumes %s skipped by backup %s: %s", strings.Join(names, ", "), backup, strings.Join(reasons, "; "))
}

// podRef is an object for an event on the pod ref names.
func podRef(ref v1.PodReference) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ref.Namespace, Name: ref.Name, UID: types.UID(ref.UID)}}
}

// podVolumeBackups lists the backup's PodVolumeBackups, only those it controls: a Backup deleted and created
// again under the same name must not count the old one's leftovers.
func (r *BackupReconciler) podVolumeBackups(ctx context.Context, reader client.Reader, b *v1.Backup) ([]v1.PodVolumeBackup, error) {
	var list v1.PodVolumeBackupList
	if err := reader.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingLabels{v1.BackupLabel: b.Name}); err != nil {
		return nil, fmt.Errorf("list PodVolumeBackups of backup %s: %w", b.Name, err)
	}
	out := list.Items[:0]
	for _, pvb := range list.Items {
		if metav1.IsControlledBy(&pvb, b) {
			out = append(out, pvb)
		}
	}
	return out, nil
}

// location finds the backup's storage location: the one it names, else the one marked default, else the one
// named "default". problem says why there is none, for the backup's status; err is a failure to ask.
func (r *BackupReconciler) location(ctx context.Context, b *v1.Backup) (loc *v1.BackupStorageLocation, problem string, err error) {
	name := b.Spec.StorageLocation
	if name == "" {
		var list v1.BackupStorageLocationList
		if err := r.Client.List(ctx, &list, client.InNamespace(r.Namespace)); err != nil {
			return nil, "", fmt.Errorf("list storage locations: %w", err)
		}
		name = "default"
		for i := range list.Items {
			if list.Items[i].Spec.Default {
				name = list.Items[i].Name
				break
			}
		}
	}
	loc = &v1.BackupStorageLocation{}
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, loc)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Sprintf("storage location %s does not exist in namespace %s", name, r.Namespace), nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read storage location %s: %w", name, err)
	}
	return loc, "", nil
}

// fail ends the backup as Failed for a reason no retry fixes, after the post hooks of the pods whose pre hooks
// ran.
func (r *BackupReconciler) fail(ctx context.Context, b *v1.Backup, reason string) (ctrl.Result, error) {
	if err := r.postHooksOnFailure(ctx, b); err != nil {
		return r.requeueOnConflict(err, "backup %s", b.Name)
	}
	now := metav1.NewTime(r.Clock.Now())
	b.Status.Phase = v1.PhaseFailed
	b.Status.Errors = append(b.Status.Errors, reason)
	b.Status.CompletionTimestamp = &now
	if b.Status.StartTimestamp == nil {
		b.Status.StartTimestamp = &now
	}
	if b.Status.Expiration == nil {
		ttl := DefaultBackupTTL
		if b.Spec.TTL != nil {
			ttl = b.Spec.TTL.Duration
		}
		exp := metav1.NewTime(now.Add(ttl))
		b.Status.Expiration = &exp
	}
	if err := r.Client.Status().Update(ctx, b); err != nil {
		return r.requeueOnConflict(err, "record failure of backup %s", b.Name)
	}
	r.Metrics.backupEnded(b)
	r.Events.Eventf(b, nil, corev1.EventTypeWarning, "Failed", "Backup", "backup failed: %s", reason)
	return r.untilExpiry(b), nil
}

// untilExpiry comes back when the backup expires, to delete it.
func (r *BackupReconciler) untilExpiry(b *v1.Backup) ctrl.Result {
	if b.Status.Expiration == nil {
		return ctrl.Result{}
	}
	return ctrl.Result{RequeueAfter: max(b.Status.Expiration.Sub(r.Clock.Now()), time.Second)}
}

// requeueOnConflict treats a conflict as "someone else moved it": look again with fresh data, not an error.
func (r *BackupReconciler) requeueOnConflict(err error, format string, args ...any) (ctrl.Result, error) {
	switch {
	case err == nil:
		return ctrl.Result{}, nil
	case apierrors.IsConflict(err):
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, fmt.Errorf(format+": %w", append(args, err)...)
}

func (r *BackupReconciler) capacityPoll() time.Duration {
	if r.CapacityPoll > 0 {
		return r.CapacityPoll
	}
	return DefaultCapacityPoll
}

func (r *BackupReconciler) maxInFlight() int {
	if r.MaxVolumesInFlight > 0 {
		return r.MaxVolumesInFlight
	}
	return DefaultMaxVolumesInFlight
}
