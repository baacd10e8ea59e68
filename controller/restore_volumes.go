package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// conflictRetry is how soon a restore whose status update met a conflict is looked at again.
const conflictRetry = 100 * time.Millisecond

// restoredPod is one pod of this restore with volumes to fill.
type restoredPod struct {
	pod     *corev1.Pod
	volumes RestoredVolumes
}

// followVolumes creates the PodVolumeRestores of pods that got a node, fails the volumes of pods that did not
// get one in time, sums up the PodVolumeRestores, and finishes once every volume has ended.
func (r *RestoreReconciler) followVolumes(ctx context.Context, rs *v1.Restore) (ctrl.Result, error) {
	pods, err := r.restoredPods(ctx, r.Client, rs)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	if countVolumes(pods) < rs.Status.VolumesTotal || r.anyOverdue(pods, now) {
		// Pods created (or bound) a moment ago may not show so in the cache yet; a lagging cache must not
		// read as lost pods, or as pods that never got a node.
		if pods, err = r.restoredPods(ctx, r.APIReader, rs); err != nil {
			return ctrl.Result{}, err
		}
	}
	pvrs, err := r.podVolumeRestores(ctx, rs)
	if err != nil {
		return ctrl.Result{}, err
	}
	// The location is looked up only when a PodVolumeRestore is to be made: without a Backup object that
	// means reading every location.
	var loc *v1.BackupStorageLocation
	var problem string
	location := func() error {
		if loc != nil || problem != "" {
			return nil
		}
		loc, problem, err = r.findBackup(ctx, rs.Spec.BackupName)
		return err
	}
	before := rs.Status.DeepCopy()
	deadline, bounded := r.deadline(rs)
	expired := bounded && !now.Before(deadline)
	if expired {
		if err := r.timeOut(ctx, rs, pvrs); err != nil {
			if apierrors.IsConflict(err) {
				// A node-agent moved the volume meanwhile: look again with what it wrote.
				return ctrl.Result{RequeueAfter: conflictRetry}, nil
			}
			return ctrl.Result{}, err
		}
	}
	timedOut := TimedOutMessage(Timeout(rs.Spec.Timeout, r.DefaultTimeout))
	var p v1.Progress
	add := func(pvr *v1.PodVolumeRestore) {
		p.BytesDone += pvr.Status.Progress.BytesDone
		p.BytesTotal += pvr.Status.Progress.BytesTotal
		p.FilesDone += pvr.Status.Progress.FilesDone
		p.FilesTotal += pvr.Status.Progress.FilesTotal
	}
	completed, failed, pending := 0, 0, 0
	// covered holds the backed-up volumes (volumeKey) that a live pod stands for, or whose data arrived in a
	// pod since gone; the rest of VolumesTotal are lost, unless a replacement pod comes.
	covered := map[string]bool{}
	var wake time.Duration
	for _, rp := range pods {
		for _, vol := range slices.Sorted(maps.Keys(rp.volumes.Volumes)) {
			covered[volumeKey(rp.volumes.SourceNamespace, rp.volumes.Volumes[vol])] = true
			name := PodVolumeBackupName(rs.Name, string(rp.pod.UID), vol)
			if pvr, ok := pvrs[name]; ok {
				add(pvr)
				switch pvr.Status.Phase {
				case v1.VolumePhaseCompleted:
					completed++
					r.announceVolume(rs, pvr)
				case v1.VolumePhaseFailed, v1.VolumePhaseCanceled:
					failed++
					addOnce(&rs.Status.Errors, fmt.Sprintf("volume %s of pod %s/%s: %s: %s", vol, rp.pod.Namespace, rp.pod.Name, pvr.Status.Phase, pvr.Status.Message))
					r.announceVolume(rs, pvr)
				default:
					pending++
				}
				continue
			}
			if expired {
				failed++
				addOnce(&rs.Status.Errors, fmt.Sprintf("volume %s of pod %s/%s: %s", vol, rp.pod.Namespace, rp.pod.Name, timedOut))
				continue
			}
			pending++
			if rp.pod.Spec.NodeName != "" {
				if err := location(); err != nil {
					return ctrl.Result{}, err
				}
				if problem != "" {
					pending--
					failed++
					addOnce(&rs.Status.Errors, fmt.Sprintf("volume %s of pod %s/%s: %s", vol, rp.pod.Namespace, rp.pod.Name, problem))
					continue
				}
				if err := r.createPodVolumeRestore(ctx, rs, rp, vol, loc.Name, name); err != nil {
					return ctrl.Result{}, err
				}
				continue
			}
			deadline := rp.pod.CreationTimestamp.Add(r.volumeTimeout())
			if !now.Before(deadline) {
				pending--
				failed++
				addOnce(&rs.Status.Errors, fmt.Sprintf("volume %s of pod %s/%s: the pod was not scheduled to a node within %s", vol, rp.pod.Namespace, rp.pod.Name, r.volumeTimeout()))
				continue
			}
			if left := deadline.Sub(now); wake == 0 || left < wake {
				wake = left
			}
		}
	}
	// A pod deleted after its data arrived leaves the data behind (a persistent volume keeps it, and the
	// restore webhook gives its replacement no second copy): its volume counts as completed. One deleted
	// before leaves nothing; what its PodVolumeRestores did is not the volume's outcome.
	for _, name := range slices.Sorted(maps.Keys(pvrs)) {
		pvr := pvrs[name]
		key := volumeKey(pvr.Spec.SourceNamespace, pvr.Spec.SnapshotID)
		if pvr.Status.Phase == v1.VolumePhaseCompleted && !covered[key] {
			covered[key] = true
			completed++
			add(pvr)
			r.announceVolume(rs, pvr)
		}
	}
	if lost := rs.Status.VolumesTotal - len(covered); lost > 0 {
		// A restored pod deleted before its volumes were filled is replaced by its controller within moments,
		// and the restore webhook gives the new pod its volumes: wait a grace period before taking them as lost.
		if left := r.lostGraceLeft(rs, now); left > 0 && !expired {
			if wake == 0 || left < wake {
				wake = left
			}
			pending += lost
		} else {
			failed += lost
			why := fmt.Sprintf("and no replacement came within %s", r.replacementGrace())
			if expired {
				why = "and the restore " + timedOut
			}
			addOnce(&rs.Status.Errors, fmt.Sprintf("%d volumes not restored: their pods were deleted before the restore reached them, %s", lost, why))
		}
	} else {
		r.lostSince.Delete(rs.UID)
	}
	rs.Status.Progress = p
	rs.Status.VolumesCompleted = completed
	rs.Status.VolumesFailed = failed
	if pending == 0 {
		r.lostSince.Delete(rs.UID)
		return r.finishRestore(ctx, rs, pvrs)
	}
	if !equality.Semantic.DeepEqual(before, &rs.Status) {
		if again, err := r.storeStatus(ctx, rs); again || err != nil {
			return ctrl.Result{RequeueAfter: conflictRetry}, err
		}
	}
	// Pods getting a node and PodVolumeRestores changing wake the restore through the watches; only the
	// timeout of a pod that never gets a node, the grace for lost pods, and the restore's timeout need a timer.
	if bounded && !expired {
		wake = soonest(wake, deadline.Sub(now))
	}
	if wake > 0 {
		return ctrl.Result{RequeueAfter: wake + time.Second}, nil
	}
	return ctrl.Result{}, nil
}

// volumeKey names a backed-up volume whichever pod stands for it: its snapshot, in its source namespace.
func volumeKey(sourceNamespace, snapshotID string) string {
	return sourceNamespace + "/" + snapshotID
}

// lostGraceLeft is how much of the replacement grace is left for the restore's lost volumes, counting from
// the first time this process saw them lost (a restarted controller waits the grace again).
func (r *RestoreReconciler) lostGraceLeft(rs *v1.Restore, now time.Time) time.Duration {
	since, _ := r.lostSince.LoadOrStore(rs.UID, now)
	return since.(time.Time).Add(r.replacementGrace()).Sub(now)
}

// finishRestore records the terminal phase: Completed only if every object and every volume came back.
func (r *RestoreReconciler) finishRestore(ctx context.Context, rs *v1.Restore, pvrs map[string]*v1.PodVolumeRestore) (ctrl.Result, error) {
	now := metav1.NewTime(r.Clock.Now())
	status := &rs.Status
	status.Phase = v1.PhaseCompleted
	if len(status.Errors) > 0 || status.VolumesFailed > 0 {
		status.Phase = v1.PhasePartiallyFailed
	}
	status.CompletionTimestamp = &now
	if again, err := r.storeStatus(ctx, rs); again || err != nil {
		return ctrl.Result{RequeueAfter: conflictRetry}, err
	}
	eventType := corev1.EventTypeNormal
	if status.Phase != v1.PhaseCompleted {
		eventType = corev1.EventTypeWarning
	}
	r.Events.Eventf(rs, nil, eventType, string(status.Phase), "Restore", "restore %s: %d of %d volumes completed, %d failed; %d errors",
		status.Phase, status.VolumesCompleted, status.VolumesTotal, status.VolumesFailed, len(status.Errors))
	r.Metrics.restoreEnded(rs)
	for _, pvr := range pvrs {
		r.reported.Delete(pvr.UID)
	}
	return ctrl.Result{}, r.releaseNamespaces(ctx, rs.Name)
}

func (r *RestoreReconciler) announceVolume(rs *v1.Restore, pvr *v1.PodVolumeRestore) {
	if _, seen := r.reported.LoadOrStore(pvr.UID, true); seen {
		return
	}
	what := fmt.Sprintf("volume %s of pod %s/%s on node %s", pvr.Spec.Volume, pvr.Spec.Pod.Namespace, pvr.Spec.Pod.Name, pvr.Spec.Node)
	pod := podRef(pvr.Spec.Pod)
	if pvr.Status.Phase == v1.VolumePhaseCompleted {
		r.Events.Eventf(rs, pvr, corev1.EventTypeNormal, "VolumeCompleted", "RestoreVolume", "%s: %d bytes, %d files restored from snapshot %s",
			what, pvr.Status.Progress.BytesDone, pvr.Status.Progress.FilesDone, pvr.Spec.SnapshotID)
		r.Events.Eventf(pod, pvr, corev1.EventTypeNormal, "VolumeRestored", "RestoreVolume", "volume %s restored by restore %s from backup %s: %d bytes, %d files",
			pvr.Spec.Volume, rs.Name, rs.Spec.BackupName, pvr.Status.Progress.BytesDone, pvr.Status.Progress.FilesDone)
		return
	}
	r.Events.Eventf(rs, pvr, corev1.EventTypeWarning, "VolumeFailed", "RestoreVolume", "%s %s: %s", what, pvr.Status.Phase, pvr.Status.Message)
	r.Events.Eventf(pod, pvr, corev1.EventTypeWarning, "VolumeRestoreFailed", "RestoreVolume", "volume %s not restored by restore %s: %s %s",
		pvr.Spec.Volume, rs.Name, pvr.Status.Phase, pvr.Status.Message)
}

// createPodVolumeRestore creates the PodVolumeRestore of one volume of a pod that has its node (contract:
// name, labels, owner and spec as the node-agent expects them).
func (r *RestoreReconciler) createPodVolumeRestore(ctx context.Context, rs *v1.Restore, rp restoredPod, vol, location, name string) error {
	pvr := &v1.PodVolumeRestore{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.Namespace,
			Name:      name,
			Labels:    map[string]string{v1.RestoreLabel: rs.Name, v1.NodeLabel: rp.pod.Spec.NodeName},
		},
		Spec: v1.PodVolumeRestoreSpec{
			Node:            rp.pod.Spec.NodeName,
			Pod:             v1.PodReference{Namespace: rp.pod.Namespace, Name: rp.pod.Name, UID: string(rp.pod.UID)},
			Volume:          vol,
			StorageLocation: location,
			SnapshotID:      rp.volumes.Volumes[vol],
			SourceNamespace: rp.volumes.SourceNamespace,
		},
	}
	if err := controllerutil.SetControllerReference(rs, pvr, r.Client.Scheme()); err != nil {
		return fmt.Errorf("own PodVolumeRestore %s: %w", name, err)
	}
	if err := r.Client.Create(ctx, pvr); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create PodVolumeRestore %s: %w", name, err)
	}
	return nil
}

// restoredPods lists the live pods this restore created, or the restore webhook prepared, with volumes to
// fill, by the restore label, keeping only those of this Restore (not of an earlier one of the same name).
func (r *RestoreReconciler) restoredPods(ctx context.Context, reader client.Reader, rs *v1.Restore) ([]restoredPod, error) {
	var list corev1.PodList
	if err := reader.List(ctx, &list, client.MatchingLabels{v1.RestoreLabel: rs.Name}); err != nil {
		return nil, fmt.Errorf("list pods of restore %s: %w", rs.Name, err)
	}
	var out []restoredPod
	for i := range list.Items {
		pod := &list.Items[i]
		if !pod.DeletionTimestamp.IsZero() {
			// On its way out: its data would go nowhere an application reads it.
			continue
		}
		var rv RestoredVolumes
		if err := json.Unmarshal([]byte(pod.Annotations[AnnotationRestoreVolumes]), &rv); err != nil || rv.RestoreUID != string(rs.UID) {
			continue
		}
		out = append(out, restoredPod{pod: pod, volumes: rv})
	}
	return out, nil
}

// anyOverdue reports whether a pod is still without a node past the volume timeout.
func (r *RestoreReconciler) anyOverdue(pods []restoredPod, now time.Time) bool {
	for _, rp := range pods {
		if rp.pod.Spec.NodeName == "" && !now.Before(rp.pod.CreationTimestamp.Add(r.volumeTimeout())) {
			return true
		}
	}
	return false
}

func countVolumes(pods []restoredPod) int {
	n := 0
	for _, rp := range pods {
		n += len(rp.volumes.Volumes)
	}
	return n
}

// podVolumeRestores lists the restore's PodVolumeRestores it controls, by name, from the API server: one
// created a moment ago and missing from a lagging cache would otherwise be created again.
func (r *RestoreReconciler) podVolumeRestores(ctx context.Context, rs *v1.Restore) (map[string]*v1.PodVolumeRestore, error) {
	var list v1.PodVolumeRestoreList
	if err := r.APIReader.List(ctx, &list, client.InNamespace(r.Namespace), client.MatchingLabels{v1.RestoreLabel: rs.Name}); err != nil {
		return nil, fmt.Errorf("list PodVolumeRestores of restore %s: %w", rs.Name, err)
	}
	out := map[string]*v1.PodVolumeRestore{}
	for i := range list.Items {
		if metav1.IsControlledBy(&list.Items[i], rs) {
			out[list.Items[i].Name] = &list.Items[i]
		}
	}
	return out, nil
}

func addOnce(list *[]string, s string) {
	if !slices.Contains(*list, s) {
		*list = append(*list, s)
	}
}
