package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// AnnotationRestoreVolumes on a restored pod records which of its volumes the restore fills and from which
// snapshots, so the PodVolumeRestores are made from the pod alone once it has a node (also after a restart).
const AnnotationRestoreVolumes = "straddle.io/restore-volumes"

// RestoredVolumes is the value of AnnotationRestoreVolumes (JSON).
type RestoredVolumes struct {
	// RestoreUID tells this restore's pods from those of an earlier Restore of the same name.
	RestoreUID string `json:"restoreUID"`
	// SourceNamespace is the pod's namespace in the backup, whose repository holds the snapshots.
	SourceNamespace string `json:"sourceNamespace"`
	// Volumes maps volume name to snapshot ID.
	Volumes map[string]string `json:"volumes"`
}

// restoreOutcome is what creating the objects did, for the status.
type restoreOutcome struct {
	counts   map[string]int
	skipped  []v1.SkippedResource
	errors   []string
	warnings []string
	volumes  int
}

// restoreResources reads the backup from storage and creates its objects, then records what it did and
// marks the resources restored. Objects are created once: a crash before the status is stored makes the next
// try find them "already exists", which is reported, not harmful.
func (r *RestoreReconciler) restoreResources(ctx context.Context, rs *v1.Restore) (ctrl.Result, error) {
	// The cache may not show yet that the objects were created a moment ago (the restored pods' events come
	// back faster than the Restore's); creating them again would report them all as existing.
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if rs.Status.Phase != v1.PhaseInProgress || meta.IsStatusConditionTrue(rs.Status.Conditions, ConditionResourcesRestored) {
		return ctrl.Result{}, nil
	}
	loc, problem, err := r.findBackup(ctx, rs.Spec.BackupName)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != "" {
		return r.failRestore(ctx, rs, problem)
	}
	sb, problem, err := r.readBackup(ctx, loc, rs.Spec.BackupName)
	if err != nil {
		return ctrl.Result{}, err
	}
	if problem != "" {
		return r.failRestore(ctx, rs, problem)
	}
	var cm corev1.ConfigMap
	cmp := &cm
	if err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: RestoreHelperConfigMap}, &cm); apierrors.IsNotFound(err) {
		cmp = nil
	} else if err != nil {
		return ctrl.Result{}, fmt.Errorf("read ConfigMap %s/%s: %w", r.Namespace, RestoreHelperConfigMap, err)
	}
	helper, err := RestoreHelperFromConfigMap(cmp)
	if err != nil {
		return r.failRestore(ctx, rs, err.Error())
	}
	out := r.createObjects(ctx, rs, sb, helper)
	err = r.updateStatus(ctx, rs, func(s *v1.RestoreStatus) bool {
		if s.Phase != v1.PhaseInProgress || meta.IsStatusConditionTrue(s.Conditions, ConditionResourcesRestored) {
			return false
		}
		s.Resources = nil
		for _, res := range slices.Sorted(maps.Keys(out.counts)) {
			s.Resources = append(s.Resources, v1.ResourceCount{Resource: res, Count: out.counts[res]})
		}
		s.SkippedResources = out.skipped
		s.Errors = out.errors
		s.Warnings = out.warnings
		s.VolumesTotal = out.volumes
		meta.SetStatusCondition(&s.Conditions, metav1.Condition{Type: ConditionResourcesRestored, Status: metav1.ConditionTrue,
			Reason: "Created", Message: fmt.Sprintf("objects of backup %s created", rs.Spec.BackupName), ObservedGeneration: rs.Generation})
		return true
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	created := 0
	for _, n := range out.counts {
		created += n
	}
	r.Events.Eventf(rs, nil, corev1.EventTypeNormal, "ResourcesRestored", "RestoreResources", "%d objects created, %d skipped, %d failed; %d volumes to restore",
		created, len(out.skipped), len(out.errors), out.volumes)
	// The status update comes back as an event, which follows the volumes from here.
	return ctrl.Result{}, nil
}

// createObjects creates the selected objects of the archive in priority order.
func (r *RestoreReconciler) createObjects(ctx context.Context, rs *v1.Restore, sb *storedBackup, helper RestoreHelper) *restoreOutcome {
	out := &restoreOutcome{counts: map[string]int{}}
	byResource := map[string][]string{}
	data := map[string][]byte{}
	for _, en := range sb.Entries {
		res, _, ok := strings.Cut(en.Name, "/")
		if !ok {
			continue
		}
		byResource[res] = append(byResource[res], en.Name)
		data[en.Name] = en.Data
	}
	podVolumes := backedUpVolumes(sb.PodVolumeBackups)
	ensured := map[string]error{}
	for _, res := range SortResources(r.priorities(), slices.Collect(maps.Keys(byResource))) {
		// Straddle's own kinds are never in an archive Straddle wrote; one from elsewhere must not start
		// backups or restores here.
		if strings.HasSuffix(res, "."+straddleGroup) {
			continue
		}
		for _, name := range byResource[res] {
			r.createObject(ctx, rs, res, data[name], podVolumes, helper, ensured, out)
		}
	}
	return out
}

const straddleGroup = "straddle.io"

// backedUpVolumes maps "namespace/pod" to the volumes with a usable snapshot, by volume name.
func backedUpVolumes(pvbs []v1.PodVolumeBackup) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, pvb := range pvbs {
		if pvb.Status.Phase != v1.VolumePhaseCompleted || pvb.Status.SnapshotID == "" {
			continue
		}
		key := pvb.Spec.Pod.Namespace + "/" + pvb.Spec.Pod.Name
		if out[key] == nil {
			out[key] = map[string]string{}
		}
		out[key][pvb.Spec.Volume] = pvb.Status.SnapshotID
	}
	return out
}

// createObject restores one archived object, recording the outcome in out.
func (r *RestoreReconciler) createObject(ctx context.Context, rs *v1.Restore, res string, doc []byte, podVolumes map[string]map[string]string,
	helper RestoreHelper, ensured map[string]error, out *restoreOutcome) {
	obj := &unstructured.Unstructured{}
	if err := json.Unmarshal(doc, &obj.Object); err != nil {
		out.errors = append(out.errors, fmt.Sprintf("%s: an archived object is unreadable: %v", res, err))
		return
	}
	source, name := obj.GetNamespace(), obj.GetName()
	if source == "" || !NamespaceSelected(rs.Spec.IncludedNamespaces, rs.Spec.ExcludedNamespaces, source) {
		return
	}
	target := source
	if m := rs.Spec.NamespaceMapping[source]; m != "" {
		target = m
	}
	skip := func(reason string) {
		out.skipped = append(out.skipped, v1.SkippedResource{Resource: res, Namespace: target, Name: name, Reason: reason})
	}
	gvk := obj.GroupVersionKind()
	mapping, err := r.Client.RESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		skip(fmt.Sprintf("kind %s is not served by this cluster", gvk))
		return
	}
	if err != nil {
		out.errors = append(out.errors, fmt.Sprintf("%s %s/%s: look up kind %s: %v", res, target, name, gvk, err))
		return
	}
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		skip(fmt.Sprintf("kind %s is not namespaced in this cluster", gvk))
		return
	}
	if reason := finishedPod(res, obj); reason != "" {
		skip(reason)
		return
	}
	err, done := ensured[target]
	if !done {
		var created bool
		created, err = r.ensureNamespace(ctx, rs.Name, source, target)
		ensured[target] = err
		if created {
			out.counts["namespaces"]++
		}
	}
	if err != nil {
		out.errors = append(out.errors, fmt.Sprintf("%s %s/%s: %v", res, target, name, err))
		return
	}
	StripForRestore(obj, res, target)
	var volumes []string
	if res == "pods" {
		if volumes, err = r.preparePod(rs, obj, source, podVolumes[source+"/"+name], helper); err != nil {
			out.errors = append(out.errors, fmt.Sprintf("pod %s/%s: %v", target, name, err))
			return
		}
	}
	err = r.Client.Create(ctx, obj)
	switch {
	case apierrors.IsAlreadyExists(err):
		skip("already exists")
		if len(volumes) > 0 {
			out.warnings = append(out.warnings, fmt.Sprintf("volumes %s of pod %s/%s not restored: the pod already exists", strings.Join(volumes, ", "), target, name))
		}
	case meta.IsNoMatchError(err):
		skip(fmt.Sprintf("kind %s is not served by this cluster", gvk))
	case err != nil:
		out.errors = append(out.errors, fmt.Sprintf("create %s %s/%s: %v", res, target, name, err))
	default:
		out.counts[res]++
		out.volumes += len(volumes)
	}
}

// preparePod gives a restored pod with backed-up volumes the restore-wait container, the restore label and
// the annotation naming its volumes; it returns the volumes restored, in the pod's order.
func (r *RestoreReconciler) preparePod(rs *v1.Restore, pod *unstructured.Unstructured, source string, snapshots map[string]string, helper RestoreHelper) ([]string, error) {
	var volumes []string
	chosen := map[string]string{}
	for _, v := range podVolumeNames(pod) {
		if id := snapshots[v]; id != "" {
			volumes = append(volumes, v)
			chosen[v] = id
		}
	}
	// Left from an earlier restore of the pod the backup took: it is this restore's business now, or none.
	labels, ann := pod.GetLabels(), pod.GetAnnotations()
	delete(labels, v1.RestoreLabel)
	delete(ann, AnnotationRestoreVolumes)
	pod.SetLabels(labels)
	pod.SetAnnotations(ann)
	// restore-wait, injected next, goes first: the hooks run after it, on the restored data.
	if err := InjectInitHooks(pod, rs.Spec.Hooks.InitContainers); err != nil {
		return nil, err
	}
	if len(volumes) == 0 {
		return nil, nil
	}
	if err := helper.Inject(pod, string(rs.UID), volumes); err != nil {
		return nil, err
	}
	if err := labelRestoredPod(pod, rs, RestoredVolumes{RestoreUID: string(rs.UID), SourceNamespace: source, Volumes: chosen}); err != nil {
		return nil, err
	}
	return volumes, nil
}

// ensureNamespace creates target if it does not exist, and labels it RestoringLabel=restore either way, before
// any object goes into it: controllers restored there create pods at once. Under a mapping whose source namespace is in this
// cluster, the new namespace gets the source's labels (the archive holds namespaced objects only, so
// otherwise there are none to give).
func (r *RestoreReconciler) ensureNamespace(ctx context.Context, restore, source, target string) (created bool, err error) {
	var ns corev1.Namespace
	err = r.APIReader.Get(ctx, client.ObjectKey{Name: target}, &ns)
	if err == nil {
		if !ns.DeletionTimestamp.IsZero() {
			return false, fmt.Errorf("namespace %s is being deleted", target)
		}
		return false, r.markRestoring(ctx, target, restore)
	}
	if !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("read namespace %s: %w", target, err)
	}
	ns = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: target}}
	if source != target {
		var orig corev1.Namespace
		if err := r.APIReader.Get(ctx, client.ObjectKey{Name: source}, &orig); err == nil {
			ns.Labels = maps.Clone(orig.Labels)
			delete(ns.Labels, corev1.LabelMetadataName)
		}
	}
	if ns.Labels == nil {
		ns.Labels = map[string]string{}
	}
	ns.Labels[RestoringLabel] = restore
	err = r.Client.Create(ctx, &ns)
	if apierrors.IsAlreadyExists(err) {
		return false, r.markRestoring(ctx, target, restore)
	}
	if err != nil {
		return false, fmt.Errorf("create namespace %s: %w", target, err)
	}
	return true, nil
}
