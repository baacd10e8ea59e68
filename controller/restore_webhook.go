package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// RestoreWaitWebhookPath is where the controller's webhook server serves RestoreWaitWebhook (contract with
// the MutatingWebhookConfiguration of deploy/base).
const RestoreWaitWebhookPath = "/mutate-v1-pod-restore-wait"

// RestoreWaitWebhook is the mutating admission webhook for pods created in a namespace a Restore is restoring
// into (RestoringLabel): a pod a restored controller creates to replace a backed-up pod (a StatefulSet's pod
// of the same ordinal; another controller's only backed-up pod nothing stands for yet) gets the restore-wait
// container, the restore label and AnnotationRestoreVolumes as a restored pod does, so the Restore fills its
// volumes before it starts. Every other pod passes unchanged.
type RestoreWaitWebhook struct {
	// Client reads the storage locations, as the Restore reconciler does.
	Client client.Client
	// APIReader reads namespaces, Restores, owners, pods, PodVolumeRestores, Secrets and the restore helper's
	// ConfigMap: the cache holds few of them, and a pod's admission must see the latest.
	APIReader client.Reader
	// Events records on the Restore why a pod of a restored controller was left alone; nil records nothing.
	Events events.EventRecorder
	// Namespace is the install namespace.
	Namespace string

	mu sync.Mutex
	// backedUp caches the stored backup's pods by Restore UID: storage is read once per restore, not per pod.
	backedUp map[types.UID]map[string][]backedUpPod
	// loading holds the reads under way, by Restore UID.
	loading map[types.UID]*backupLoad
}

// maxCachedBackups bounds the cache; past it the cache starts over (restores at once are few).
const maxCachedBackups = 16

// Handle implements admission.Handler.
func (w *RestoreWaitWebhook) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("")
	}
	pod := &unstructured.Unstructured{}
	if err := json.Unmarshal(req.Object.Raw, &pod.Object); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	if pod.GetNamespace() == "" {
		pod.SetNamespace(req.Namespace)
	}
	// A dry run must have no side effects (the configuration says sideEffects: None): no Events.
	record := req.DryRun == nil || !*req.DryRun
	prepared, reason, err := w.prepare(ctx, pod, record)
	if err != nil {
		logf.FromContext(ctx).Error(err, "restore webhook", "namespace", pod.GetNamespace(), "pod", pod.GetName(), "generateName", pod.GetGenerateName())
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if !prepared {
		return admission.Allowed(reason)
	}
	doc, err := json.Marshal(pod.Object)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode pod: %w", err))
	}
	return admission.PatchResponseFromRaw(req.Object.Raw, doc)
}

// Prepare gives pod restore-wait, the restore label and annotation if it replaces a backed-up pod of the
// Restore restoring into its namespace. prepared says whether it changed pod; reason why not. err is a
// failure worth retrying (the API server refuses the pod, its controller creates it again).
func (w *RestoreWaitWebhook) Prepare(ctx context.Context, pod *unstructured.Unstructured) (prepared bool, reason string, err error) {
	return w.prepare(ctx, pod, true)
}

// prepare is Prepare; record says whether to record on the Restore why a pod was left alone.
func (w *RestoreWaitWebhook) prepare(ctx context.Context, pod *unstructured.Unstructured, record bool) (prepared bool, reason string, err error) {
	inits, _, _ := unstructured.NestedSlice(pod.Object, "spec", "initContainers")
	for i, ic := range inits {
		if m, ok := ic.(map[string]any); ok && m["name"] == RestoreWaitContainer {
			if i == 0 {
				return false, "the pod has restore-wait already", nil
			}
			// A webhook after this one put its init containers first: restore-wait must run before them,
			// they may read the volumes.
			inits = append([]any{ic}, slices.Delete(inits, i, i+1)...)
			return true, "", unstructured.SetNestedSlice(pod.Object, inits, "spec", "initContainers")
		}
	}
	var owner *metav1.OwnerReference
	for _, ref := range pod.GetOwnerReferences() {
		if ref.Controller != nil && *ref.Controller {
			owner = &ref
		}
	}
	if owner == nil {
		return false, "the pod has no controller", nil
	}
	target := pod.GetNamespace()
	var ns corev1.Namespace
	if err := w.APIReader.Get(ctx, client.ObjectKey{Name: target}, &ns); err != nil {
		return false, "", fmt.Errorf("read namespace %s: %w", target, err)
	}
	restore := ns.Labels[RestoringLabel]
	if restore == "" {
		return false, "no restore is restoring into the namespace", nil
	}
	var rs v1.Restore
	err = w.APIReader.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: restore}, &rs)
	if apierrors.IsNotFound(err) {
		return false, fmt.Sprintf("restore %s is gone", restore), nil
	}
	if err != nil {
		return false, "", fmt.Errorf("read restore %s: %w", restore, err)
	}
	if rs.Status.Phase != v1.PhaseInProgress || !rs.DeletionTimestamp.IsZero() {
		return false, fmt.Sprintf("restore %s is %s", restore, phaseOrNew(rs.Status.Phase)), nil
	}
	restored, err := w.ownerRestored(ctx, target, owner, &rs)
	if err != nil || !restored {
		return false, fmt.Sprintf("%s %s was not created by restore %s", owner.Kind, owner.Name, restore), err
	}
	// From here on the pod belongs to a controller the restore made: when it is left alone, say why.
	prepared, reason, err = w.prepareReplacement(ctx, pod, owner, &rs)
	if err == nil && !prepared && record && w.Events != nil {
		w.Events.Eventf(&rs, nil, corev1.EventTypeWarning, "PodNotPrepared", "RestoreWebhook", "pod %s/%s%s of %s %s created during the restore gets no restore-wait: %s",
			target, pod.GetName(), pod.GetGenerateName(), owner.Kind, owner.Name, reason)
	}
	return prepared, reason, err
}

// prepareReplacement matches the pod of a restored controller to its backed-up pod and injects restore-wait.
func (w *RestoreWaitWebhook) prepareReplacement(ctx context.Context, pod *unstructured.Unstructured, owner *metav1.OwnerReference, rs *v1.Restore) (bool, string, error) {
	target := pod.GetNamespace()
	backedUp, problem, err := w.backedUpPods(ctx, rs)
	if err != nil || problem != "" {
		return false, problem, err
	}
	live, done, err := w.volumesTaken(ctx, rs, target)
	if err != nil {
		return false, "", err
	}
	m := matchBackedUpPod(backedUp, sourceNamespaces(rs.Spec, target, backedUp), pod.GetName(), owner, live)
	if m.Pod == nil {
		return false, m.Reason, nil
	}
	var volumes []string
	chosen := map[string]string{}
	for _, v := range podVolumeNames(pod) {
		id := m.Pod.Snapshots[v]
		if id == "" || done[volumeKey(m.Pod.Namespace, id)] {
			continue
		}
		volumes = append(volumes, v)
		chosen[v] = id
	}
	if len(volumes) == 0 {
		return false, fmt.Sprintf("the volumes of backed-up pod %s/%s were restored already, or the pod has none of them", m.Pod.Namespace, m.Pod.Name), nil
	}
	var cm corev1.ConfigMap
	cmp := &cm
	if err := w.APIReader.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: RestoreHelperConfigMap}, &cm); apierrors.IsNotFound(err) {
		cmp = nil
	} else if err != nil {
		return false, "", fmt.Errorf("read ConfigMap %s/%s: %w", w.Namespace, RestoreHelperConfigMap, err)
	}
	// A bad ConfigMap refuses the pod (its controller tries again) rather than start its app on a volume
	// still being written; the error names the key to fix.
	helper, err := RestoreHelperFromConfigMap(cmp)
	if err != nil {
		return false, "", err
	}
	if err := helper.Inject(pod, string(rs.UID), volumes); err != nil {
		return false, "", err
	}
	if err := InjectInitHooks(pod, rs.Spec.Hooks.InitContainers); err != nil {
		return false, "", err
	}
	if err := labelRestoredPod(pod, rs, RestoredVolumes{RestoreUID: string(rs.UID), SourceNamespace: m.Pod.Namespace, Volumes: chosen}); err != nil {
		return false, "", err
	}
	logf.FromContext(ctx).Info("pod of a restored controller prepared", "namespace", target, "pod", pod.GetName(), "restore", rs.Name,
		"replaces", m.Pod.Namespace+"/"+m.Pod.Name, "volumes", volumes)
	return true, "", nil
}

// ownerRestored reports whether the pod's controller is an object the restore created: it exists with the
// reference's UID and was created after the Restore (one that was there before, and skipped as existing,
// makes pods of its own). Both creation times come from the API server's clock, so the controller's clock
// being off does not matter.
func (w *RestoreWaitWebhook) ownerRestored(ctx context.Context, namespace string, owner *metav1.OwnerReference, rs *v1.Restore) (bool, error) {
	obj := &metav1.PartialObjectMetadata{}
	obj.SetGroupVersionKind(schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind))
	err := w.APIReader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: owner.Name}, obj)
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s %s/%s: %w", owner.Kind, namespace, owner.Name, err)
	}
	if obj.UID != owner.UID {
		return false, nil
	}
	return !obj.CreationTimestamp.Before(&rs.CreationTimestamp), nil
}

// volumesTaken reads which backed-up volumes have a live pod of the restore in namespace standing for them
// (live), and which were restored already, into a pod since gone or not (done), as volumeKeys.
func (w *RestoreWaitWebhook) volumesTaken(ctx context.Context, rs *v1.Restore, namespace string) (live, done map[string]bool, err error) {
	var pods corev1.PodList
	if err := w.APIReader.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels{v1.RestoreLabel: rs.Name}); err != nil {
		return nil, nil, fmt.Errorf("list pods of restore %s in %s: %w", rs.Name, namespace, err)
	}
	live = map[string]bool{}
	for _, p := range pods.Items {
		var rv RestoredVolumes
		if !p.DeletionTimestamp.IsZero() || json.Unmarshal([]byte(p.Annotations[AnnotationRestoreVolumes]), &rv) != nil || rv.RestoreUID != string(rs.UID) {
			continue
		}
		for _, id := range rv.Volumes {
			live[volumeKey(rv.SourceNamespace, id)] = true
		}
	}
	var pvrs v1.PodVolumeRestoreList
	if err := w.APIReader.List(ctx, &pvrs, client.InNamespace(w.Namespace), client.MatchingLabels{v1.RestoreLabel: rs.Name}); err != nil {
		return nil, nil, fmt.Errorf("list PodVolumeRestores of restore %s: %w", rs.Name, err)
	}
	done = map[string]bool{}
	for _, pvr := range pvrs.Items {
		if metav1.IsControlledBy(&pvr, rs) && pvr.Status.Phase == v1.VolumePhaseCompleted {
			done[volumeKey(pvr.Spec.SourceNamespace, pvr.Spec.SnapshotID)] = true
		}
	}
	return live, done, nil
}

// backedUpPods reads the restore's backup from storage once per Restore UID. problem says why the backup
// cannot be read (the restore itself fails on it); err is worth retrying.
//
// The read outlives the admission request that started it: a large archive may take longer than the
// webhook's timeout, and the controller's next try of the pod then finds it read.
func (w *RestoreWaitWebhook) backedUpPods(ctx context.Context, rs *v1.Restore) (map[string][]backedUpPod, string, error) {
	w.mu.Lock()
	if cached, ok := w.backedUp[rs.UID]; ok {
		w.mu.Unlock()
		return cached, "", nil
	}
	if w.loading == nil {
		w.loading = map[types.UID]*backupLoad{}
	}
	load := w.loading[rs.UID]
	if load == nil {
		load = &backupLoad{done: make(chan struct{})}
		w.loading[rs.UID] = load
		go w.load(context.WithoutCancel(ctx), rs.DeepCopy(), load)
	}
	w.mu.Unlock()
	select {
	case <-load.done:
		return load.pods, load.problem, load.err
	case <-ctx.Done():
		return nil, "", fmt.Errorf("read backup %s from storage: not done yet, the pod's next try may find it read: %w", rs.Spec.BackupName, ctx.Err())
	}
}

// backupLoad is one read of a restore's backup, shared by the requests waiting for it.
type backupLoad struct {
	done    chan struct{}
	pods    map[string][]backedUpPod
	problem string
	err     error
}

// backupReadTimeout bounds one read of a backup for the webhook.
const backupReadTimeout = 5 * time.Minute

func (w *RestoreWaitWebhook) load(ctx context.Context, rs *v1.Restore, load *backupLoad) {
	ctx, cancel := context.WithTimeout(ctx, backupReadTimeout)
	defer cancel()
	load.pods, load.problem, load.err = w.readBackedUpPods(ctx, rs)
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.loading, rs.UID)
	if load.err == nil && load.problem == "" {
		if w.backedUp == nil || len(w.backedUp) >= maxCachedBackups {
			w.backedUp = map[types.UID]map[string][]backedUpPod{}
		}
		w.backedUp[rs.UID] = load.pods
	}
	close(load.done)
}

// readBackedUpPods reads the backup as the Restore reconciler does.
func (w *RestoreWaitWebhook) readBackedUpPods(ctx context.Context, rs *v1.Restore) (map[string][]backedUpPod, string, error) {
	reader := &RestoreReconciler{Client: w.Client, APIReader: w.APIReader, Namespace: w.Namespace}
	loc, problem, err := reader.findBackup(ctx, rs.Spec.BackupName)
	if err != nil || problem != "" {
		return nil, problem, err
	}
	sb, problem, err := reader.readBackup(ctx, loc, rs.Spec.BackupName)
	if err != nil || problem != "" {
		return nil, problem, err
	}
	pods, err := backedUpPods(sb)
	if err != nil {
		return nil, fmt.Sprintf("backup %s: %v", rs.Spec.BackupName, err), nil
	}
	return pods, "", nil
}

// labelRestoredPod gives pod the restore label and AnnotationRestoreVolumes, which the Restore reconciler
// finds its pods by.
func labelRestoredPod(pod *unstructured.Unstructured, rs *v1.Restore, rv RestoredVolumes) error {
	doc, err := json.Marshal(rv)
	if err != nil {
		return fmt.Errorf("encode annotation %s: %w", AnnotationRestoreVolumes, err)
	}
	labels, ann := pod.GetLabels(), pod.GetAnnotations()
	if labels == nil {
		labels = map[string]string{}
	}
	if ann == nil {
		ann = map[string]string{}
	}
	labels[v1.RestoreLabel] = rs.Name
	ann[AnnotationRestoreVolumes] = string(doc)
	pod.SetLabels(labels)
	pod.SetAnnotations(ann)
	return nil
}

var _ admission.Handler = &RestoreWaitWebhook{}

// RestoreWaitWebhookConfiguration is the MutatingWebhookConfiguration that sends pods to RestoreWaitWebhook,
// and WebhookServiceName the Service in the install namespace it calls (contracts with deploy/base).
const (
	RestoreWaitWebhookConfiguration = "straddle-restore-wait"
	WebhookServiceName              = "straddle-webhook"
)
