package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/snapshot"
)

// createPodVolumeBackups chooses the backup's volumes from the pods, records the skips and warnings, and
// creates the PodVolumeBackups still missing while the cluster-wide cap allows, each pod's after its pre hooks
// ran. It returns how many chosen volumes are still without one, and the UIDs of their pods (whose post hooks
// must wait); problem is a reason to fail the backup.
func (r *BackupReconciler) createPodVolumeBackups(ctx context.Context, b *v1.Backup, loc *v1.BackupStorageLocation, existing []v1.PodVolumeBackup) (remaining int, waiting map[string]bool, problem string, err error) {
	sel, err := r.selectVolumes(ctx, b)
	if err != nil {
		return 0, nil, "", err
	}
	b.Status.SkippedVolumes = sel.Skipped
	b.Status.Warnings = sel.Warnings
	have := map[string]bool{}
	for _, pvb := range existing {
		have[pvb.Name] = true
	}
	var pending []PlannedVolume
	for _, pv := range sel.Volumes {
		if !have[PodVolumeBackupName(b.Name, pv.PodUID, pv.Volume)] {
			pending = append(pending, pv)
		}
	}
	if len(pending) == 0 {
		return 0, nil, "", nil
	}
	room, err := r.room(ctx)
	if err != nil {
		return 0, nil, "", err
	}
	batch := pending[:max(min(room, len(pending)), 0)]
	waiting = map[string]bool{}
	for _, pv := range pending[len(batch):] {
		waiting[pv.PodUID] = true
	}
	if len(batch) == 0 {
		return len(pending), waiting, "", nil
	}
	// Parents come from each namespace's repository, which is made sure to exist first: node-agents never
	// create repositories, so two of them never race to.
	parents := map[string][]*snapshot.Snapshot{}
	for _, pv := range batch {
		if _, ok := parents[pv.Namespace]; ok {
			continue
		}
		snaps, err := r.ensureRepository(ctx, loc, pv.Namespace)
		if err != nil {
			return 0, nil, fmt.Sprintf("repository of namespace %s in storage location %s: %v", pv.Namespace, loc.Name, err), nil
		}
		parents[pv.Namespace] = snaps
	}
	hookFailures := map[string]string{}
	for _, pv := range batch {
		failure, ran := hookFailures[pv.PodUID]
		if !ran {
			if failure, err = r.preHooks(ctx, b, pv); err != nil {
				return 0, nil, "", err
			}
			hookFailures[pv.PodUID] = failure
		}
		pvb := r.newPodVolumeBackup(b, loc.Name, pv, parentFor(parents[pv.Namespace], pv))
		if failure != "" {
			// No node-agent sees it without its node label; failVolumesOfFailedPods ends it.
			delete(pvb.Labels, v1.NodeLabel)
		}
		if err := controllerutil.SetControllerReference(b, pvb, r.Client.Scheme()); err != nil {
			return 0, nil, "", fmt.Errorf("own PodVolumeBackup %s: %w", pvb.Name, err)
		}
		err := r.Client.Create(ctx, pvb)
		if apierrors.IsAlreadyExists(err) {
			// Created by an earlier reconcile that the cache has not shown yet.
			continue
		}
		if err != nil {
			return 0, nil, "", fmt.Errorf("create PodVolumeBackup %s: %w", pvb.Name, err)
		}
		parent := pvb.Spec.ParentSnapshotID
		if parent == "" {
			parent = "none"
		}
		r.Events.Eventf(b, pvb, corev1.EventTypeNormal, "VolumeQueued", "BackupVolume", "PodVolumeBackup %s for volume %s of pod %s/%s on node %s (parent snapshot %s)",
			pvb.Name, pv.Volume, pv.Namespace, pv.Pod, pv.Node, parent)
	}
	return len(pending) - len(batch), waiting, "", nil
}

// preHooks runs the pre hooks of pv's pod (once per pod: their outcomes are in the status) and returns why
// its volumes must fail, or "".
func (r *BackupReconciler) preHooks(ctx context.Context, b *v1.Backup, pv PlannedVolume) (string, error) {
	var pod corev1.Pod
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: pv.Namespace, Name: pv.Pod}, &pod)
	if apierrors.IsNotFound(err) || (err == nil && string(pod.UID) != pv.PodUID) {
		// Gone since it was listed: its node-agent reports the volume missing.
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read pod %s/%s for its pre hooks: %w", pv.Namespace, pv.Pod, err)
	}
	return r.runPreHooks(ctx, b, &pod)
}

// room is how many more PodVolumeBackups may start under the cluster-wide cap. It reads the API server, not
// the cache, so PodVolumeBackups created a moment ago are counted; and this controller reconciles one Backup
// at a time, so two backups never take the same room.
func (r *BackupReconciler) room(ctx context.Context) (int, error) {
	var all v1.PodVolumeBackupList
	if err := r.APIReader.List(ctx, &all, client.InNamespace(r.Namespace)); err != nil {
		return 0, fmt.Errorf("count PodVolumeBackups in flight: %w", err)
	}
	inFlight := 0
	for _, pvb := range all.Items {
		if !volumeTerminal(pvb.Status.Phase) {
			inFlight++
		}
	}
	return r.maxInFlight() - inFlight, nil
}

func volumeTerminal(p v1.VolumePhase) bool {
	return p == v1.VolumePhaseCompleted || p == v1.VolumePhaseFailed || p == v1.VolumePhaseCanceled
}

// selectVolumes reads the selected namespaces' pods and claims and chooses the volumes.
func (r *BackupReconciler) selectVolumes(ctx context.Context, b *v1.Backup) (Selection, error) {
	namespaces, err := r.selectedNamespaces(ctx, b)
	if err != nil {
		return Selection{}, err
	}
	var opts []client.ListOption
	if b.Spec.LabelSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(b.Spec.LabelSelector)
		if err != nil {
			// The API server accepted it, so this is unreachable in practice; fail loudly rather than take all.
			return Selection{}, fmt.Errorf("label selector of backup %s: %w", b.Name, err)
		}
		opts = append(opts, client.MatchingLabelsSelector{Selector: s})
	}
	var pods []corev1.Pod
	pvcs := map[string]*corev1.PersistentVolumeClaim{}
	for _, ns := range namespaces {
		var podList corev1.PodList
		if err := r.Client.List(ctx, &podList, append([]client.ListOption{client.InNamespace(ns)}, opts...)...); err != nil {
			return Selection{}, fmt.Errorf("list pods in namespace %s: %w", ns, err)
		}
		slices.SortFunc(podList.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
		pods = append(pods, podList.Items...)
		var claims corev1.PersistentVolumeClaimList
		if err := r.Client.List(ctx, &claims, client.InNamespace(ns)); err != nil {
			return Selection{}, fmt.Errorf("list persistent volume claims in namespace %s: %w", ns, err)
		}
		for i := range claims.Items {
			pvcs[ns+"/"+claims.Items[i].Name] = &claims.Items[i]
		}
	}
	defaultAll := r.DefaultVolumesToFsBackup
	if b.Spec.DefaultVolumesToFsBackup != nil {
		defaultAll = *b.Spec.DefaultVolumesToFsBackup
	}
	return SelectVolumes(pods, pvcs, VolumeDefaults{All: defaultAll, Excluded: r.DefaultExcludedVolumes}), nil
}

// selectedNamespaces lists the existing namespaces the backup takes, sorted.
func (r *BackupReconciler) selectedNamespaces(ctx context.Context, b *v1.Backup) ([]string, error) {
	var list corev1.NamespaceList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("list namespaces: %w", err)
	}
	var out []string
	for _, ns := range list.Items {
		if NamespaceSelected(b.Spec.IncludedNamespaces, b.Spec.ExcludedNamespaces, ns.Name) {
			out = append(out, ns.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (r *BackupReconciler) newPodVolumeBackup(b *v1.Backup, location string, pv PlannedVolume, parent string) *v1.PodVolumeBackup {
	tags := map[string]string{
		bsl.TagBackup:    b.Name,
		bsl.TagNamespace: pv.Namespace,
		bsl.TagPod:       pv.Pod,
		bsl.TagPodUID:    pv.PodUID,
		bsl.TagVolume:    pv.Volume,
	}
	if pv.PVC != "" {
		tags[bsl.TagPVC] = pv.PVC
	}
	return &v1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: r.Namespace,
			Name:      PodVolumeBackupName(b.Name, pv.PodUID, pv.Volume),
			Labels:    map[string]string{v1.BackupLabel: b.Name, v1.NodeLabel: pv.Node},
		},
		Spec: v1.PodVolumeBackupSpec{
			Node:             pv.Node,
			Pod:              v1.PodReference{Namespace: pv.Namespace, Name: pv.Pod, UID: pv.PodUID},
			Volume:           pv.Volume,
			PVC:              pv.PVC,
			StorageLocation:  location,
			ParentSnapshotID: parent,
			Tags:             tags,
			ExcludePatterns:  pv.ExcludePatterns,
		},
	}
}

// parentFor picks the newest snapshot of the same claim, or for a volume without a claim (emptyDir and the
// like) of the same pod and volume. snaps is oldest first.
func parentFor(snaps []*snapshot.Snapshot, pv PlannedVolume) string {
	for _, s := range slices.Backward(snaps) {
		match := s.Tags[bsl.TagPVC] == pv.PVC
		if pv.PVC == "" {
			match = match && s.Tags[bsl.TagPod] == pv.Pod && s.Tags[bsl.TagVolume] == pv.Volume
		}
		if match {
			return s.ID.String()
		}
	}
	return ""
}

// ensureRepository opens (creating if need be) the repository of namespace's volumes in loc, records the
// outcome in its BackupRepository, and returns the repository's snapshots, oldest first.
func (r *BackupReconciler) ensureRepository(ctx context.Context, loc *v1.BackupStorageLocation, namespace string) ([]*snapshot.Snapshot, error) {
	var snaps []*snapshot.Snapshot
	rp, err := bsl.OpenRepository(ctx, r.APIReader, loc, namespace, true)
	if err == nil {
		snaps, err = rp.ListSnapshots(ctx)
		if err != nil {
			err = fmt.Errorf("list snapshots: %w", err)
		}
	}
	if rerr := r.recordRepository(ctx, loc.Name, namespace, err); rerr != nil {
		return nil, rerr
	}
	return snaps, err
}

// recordRepository creates or updates the BackupRepository of (location, namespace) with whether its
// repository could be opened.
func (r *BackupReconciler) recordRepository(ctx context.Context, location, namespace string, openErr error) error {
	name := location + "-" + namespace
	var br v1.BackupRepository
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, &br)
	if apierrors.IsNotFound(err) {
		br = v1.BackupRepository{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: name},
			Spec:       v1.BackupRepositorySpec{StorageLocation: location, VolumeNamespace: namespace},
		}
		err = r.Client.Create(ctx, &br)
		if apierrors.IsAlreadyExists(err) {
			err = r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, &br)
		}
	}
	if err != nil {
		return fmt.Errorf("BackupRepository %s: %w", name, err)
	}
	// Only the phase and message are the backup's to say; maintenance (requests, claims, results) is kept as
	// read, and the resourceVersion makes a concurrent change of it a conflict rather than a loss.
	want := br.Status.DeepCopy()
	want.Phase, want.Message = "Ready", "repository opened"
	if openErr != nil {
		want.Phase, want.Message = "NotReady", openErr.Error()
	}
	if equality.Semantic.DeepEqual(br.Status, *want) {
		return nil
	}
	br.Status = *want
	if err := r.Client.Status().Update(ctx, &br); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("record status of BackupRepository %s: %w", name, err)
	}
	return nil
}
