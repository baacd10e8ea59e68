package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
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
	// Each pod's hooks run here, one pod after another (their outcomes go into b's status); its
	// PodVolumeBackups are then created by the workers while the next pod's hooks run.
	creates, cctx := errgroup.WithContext(ctx)
	creates.SetLimit(createWorkers)
	// The workers' events name this copy: b itself changes as hooks record their outcomes.
	owner := b.DeepCopy()
	hookFailures := map[string]string{}
	for _, pv := range batch {
		if cctx.Err() != nil {
			// A create failed: run no more pods' hooks for volumes that would not be created now.
			break
		}
		failure, ran := hookFailures[pv.PodUID]
		if !ran {
			if failure, err = r.preHooks(ctx, b, pv); err != nil {
				_ = creates.Wait()
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
			_ = creates.Wait()
			return 0, nil, "", fmt.Errorf("own PodVolumeBackup %s: %w", pvb.Name, err)
		}
		creates.Go(func() error { return r.createPodVolumeBackup(cctx, owner, pv, pvb) })
	}
	if err := creates.Wait(); err != nil {
		return 0, nil, "", err
	}
	return len(pending) - len(batch), waiting, "", nil
}

// createWorkers is how many PodVolumeBackups are created at once: one at a time, a thousand-pod backup waits
// out a thousand round trips; the API server's priority and fairness queues what more would send.
const createWorkers = 16

// createPodVolumeBackup creates one PodVolumeBackup and announces it on its backup.
func (r *BackupReconciler) createPodVolumeBackup(ctx context.Context, b *v1.Backup, pv PlannedVolume, pvb *v1.PodVolumeBackup) error {
	err := r.Client.Create(ctx, pvb)
	if apierrors.IsAlreadyExists(err) {
		// Created by an earlier reconcile that the cache has not shown yet.
		return nil
	}
	if err != nil {
		return fmt.Errorf("create PodVolumeBackup %s: %w", pvb.Name, err)
	}
	r.created.add(pvb.Name, r.Clock.Now())
	parent := pvb.Spec.ParentSnapshotID
	if parent == "" {
		parent = "none"
	}
	r.Events.Eventf(b, pvb, corev1.EventTypeNormal, "VolumeQueued", "BackupVolume", "PodVolumeBackup %s for volume %s of pod %s/%s on node %s (parent snapshot %s)",
		pvb.Name, pv.Volume, pv.Namespace, pv.Pod, pv.Node, parent)
	return nil
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

// room is how many more PodVolumeBackups may start under the cluster-wide cap. It counts from the cache, plus
// the PodVolumeBackups this process created that the cache does not show yet, so one created a moment ago is
// counted; and this controller reconciles one Backup at a time, so two backups never take the same room. A
// list from the API server instead would read every PodVolumeBackup of every retained backup on each reconcile
// (docs/scaling.md).
func (r *BackupReconciler) room(ctx context.Context) (int, error) {
	var all v1.PodVolumeBackupList
	if err := r.Client.List(ctx, &all, client.InNamespace(r.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return 0, fmt.Errorf("count PodVolumeBackups in flight: %w", err)
	}
	inFlight := 0
	cached := make(map[string]bool, len(all.Items))
	for _, pvb := range all.Items {
		cached[pvb.Name] = true
		if !volumeTerminal(pvb.Status.Phase) {
			inFlight++
		}
	}
	inFlight += r.created.unseen(cached, r.Clock.Now())
	return r.maxInFlight() - inFlight, nil
}

// createdNotCached remembers the PodVolumeBackups this process created until its cache shows them.
type createdNotCached struct {
	mu    sync.Mutex
	names map[string]time.Time
}

// notCachedFor bounds how long a created PodVolumeBackup counts without the cache showing it: one deleted
// before the cache saw it would otherwise hold its room forever.
const notCachedFor = time.Minute

func (c *createdNotCached) add(name string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.names == nil {
		c.names = map[string]time.Time{}
	}
	c.names[name] = at
}

// unseen forgets the names the cache shows now (or that are too old to wait for) and counts the rest.
func (c *createdNotCached) unseen(cached map[string]bool, now time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, at := range c.names {
		if cached[name] || now.Sub(at) > notCachedFor {
			delete(c.names, name)
		}
	}
	return len(c.names)
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
