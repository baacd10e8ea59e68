package controller

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// DefaultRestorePriorities is the order resources are restored in (DESIGN §6), by archive resource name
// ("resource.group", the core group as just "resource"): what others depend on first, then Pods (so the
// backed-up pods, with their restore-wait containers, exist before the controllers that would otherwise make
// new ones), then the workload controllers, which adopt those pods. Everything else follows by name.
var DefaultRestorePriorities = []string{
	"namespaces",
	"storageclasses.storage.k8s.io",
	"persistentvolumes",
	"persistentvolumeclaims",
	"secrets",
	"configmaps",
	"serviceaccounts",
	"roles.rbac.authorization.k8s.io",
	"rolebindings.rbac.authorization.k8s.io",
	"limitranges",
	"pods",
	"replicasets.apps",
	"deployments.apps",
	"statefulsets.apps",
	"daemonsets.apps",
	"jobs.batch",
	"cronjobs.batch",
}

// priorityRank is where resource (an archive resource name) comes in priorities: the index of the first
// entry naming it, either whole ("deployments.apps") or by resource alone ("deployments"); len(priorities)
// if none does.
func priorityRank(priorities []string, resource string) int {
	bare, _, _ := strings.Cut(resource, ".")
	for i, p := range priorities {
		if p == resource || !strings.Contains(p, ".") && p == bare {
			return i
		}
	}
	return len(priorities)
}

// SortResources orders archive resource names for a restore: by priority, then by name, so the order is the
// same on every run.
func SortResources(priorities, resources []string) []string {
	out := slices.Clone(resources)
	slices.SortStableFunc(out, func(a, b string) int {
		return cmp.Or(cmp.Compare(priorityRank(priorities, a), priorityRank(priorities, b)), strings.Compare(a, b))
	})
	return out
}

// StripForRestore clears what the API server owns or what would tie the object to its old life, and moves it
// into namespace. resource is the archive resource name.
//   - uid, resourceVersion, generation, creationTimestamp, deletion fields, managedFields, status: the API
//     server's, given anew on create.
//   - ownerReferences, all of them: the owners' UIDs are gone; controllers re-adopt their objects by selector.
//   - a Pod's nodeName: the scheduler places it again (the old node may not exist).
//   - a Service's clusterIP(s) and node ports: they may be taken, and are allocated afresh ("None" stays: it
//     makes the Service headless).
//   - a PVC's volumeName and binding annotations, so a new volume is provisioned for it (its data comes back
//     through the pod volume restore); selected-node would pin it to a node that may not exist.
//   - a Job's generated selector and controller-uid labels, which the API server refuses on a new Job.
func StripForRestore(obj *unstructured.Unstructured, resource, namespace string) {
	obj.SetNamespace(namespace)
	for _, f := range []string{"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
		"deletionGracePeriodSeconds", "managedFields", "ownerReferences", "selfLink"} {
		unstructured.RemoveNestedField(obj.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(obj.Object, "status")
	switch resource {
	case "pods":
		unstructured.RemoveNestedField(obj.Object, "spec", "nodeName")
	case "services":
		if ip, _, _ := unstructured.NestedString(obj.Object, "spec", "clusterIP"); ip != corev1.ClusterIPNone {
			unstructured.RemoveNestedField(obj.Object, "spec", "clusterIP")
			unstructured.RemoveNestedField(obj.Object, "spec", "clusterIPs")
		}
		unstructured.RemoveNestedField(obj.Object, "spec", "healthCheckNodePort")
		if ports, ok, _ := unstructured.NestedSlice(obj.Object, "spec", "ports"); ok {
			for _, p := range ports {
				if m, ok := p.(map[string]any); ok {
					delete(m, "nodePort")
				}
			}
			_ = unstructured.SetNestedSlice(obj.Object, ports, "spec", "ports")
		}
	case "persistentvolumeclaims":
		unstructured.RemoveNestedField(obj.Object, "spec", "volumeName")
		ann := obj.GetAnnotations()
		for k := range ann {
			if strings.HasPrefix(k, "pv.kubernetes.io/") || k == "volume.kubernetes.io/selected-node" {
				delete(ann, k)
			}
		}
		obj.SetAnnotations(ann)
	case "jobs.batch":
		if manual, _, _ := unstructured.NestedBool(obj.Object, "spec", "manualSelector"); !manual {
			unstructured.RemoveNestedField(obj.Object, "spec", "selector")
			for _, l := range []string{"controller-uid", "batch.kubernetes.io/controller-uid", "job-name", "batch.kubernetes.io/job-name"} {
				unstructured.RemoveNestedField(obj.Object, "spec", "template", "metadata", "labels", l)
			}
		}
	}
	if len(obj.GetAnnotations()) == 0 {
		unstructured.RemoveNestedField(obj.Object, "metadata", "annotations")
	}
}

// finishedPod says why an archived pod is not restored: one that had run to its end (a Job's, say) would
// run again. "" for any other object.
func finishedPod(resource string, obj *unstructured.Unstructured) string {
	if resource != "pods" {
		return ""
	}
	switch phase, _, _ := unstructured.NestedString(obj.Object, "status", "phase"); corev1.PodPhase(phase) {
	case corev1.PodSucceeded, corev1.PodFailed:
		return fmt.Sprintf("pod had finished (%s): restoring it would run it again", phase)
	}
	return ""
}

// RestoreWaitContainer is the name of the init container that holds a restored pod until its volumes' data
// is in place (contract with the restore helper, DESIGN §8).
const RestoreWaitContainer = "restore-wait"

// RestoreHelperConfigMap holds the restore-wait container's image, resources and security settings, in the
// install namespace.
const RestoreHelperConfigMap = "straddle-restore-helper"

// RestoreHelperMountRoot is where restore-wait sees each restored volume, as <root>/<volume>.
const RestoreHelperMountRoot = "/restores"

// RestoreHelperUID is the user restore-wait runs as unless the ConfigMap says otherwise: not root, and not a
// user an image is likely to give its app (the distroless images' "nonroot").
const RestoreHelperUID = 65532

// RestoreHelper is the restore-wait container's image, resources and security settings, as the ConfigMap
// gives them.
type RestoreHelper struct {
	Image                                            string
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
	// SecurityContext is the container's; nil means DefaultRestoreHelperSecurityContext.
	SecurityContext *corev1.SecurityContext
	// ImagePullSecrets are added to the restored pod's spec.imagePullSecrets, for a helper image in a
	// private registry.
	ImagePullSecrets []string
}

// DefaultRestoreHelper is used for keys the ConfigMap lacks (or when there is no ConfigMap).
var DefaultRestoreHelper = RestoreHelper{
	Image:         "ghcr.io/straddle-io/straddle-restore-helper:dev",
	CPURequest:    "10m",
	MemoryRequest: "16Mi",
	CPULimit:      "100m",
	MemoryLimit:   "64Mi",
}

// DefaultRestoreHelperSecurityContext satisfies Pod Security "restricted": the helper only stats and removes
// marker files, so it needs no privilege, no capability and no writable root.
func DefaultRestoreHelperSecurityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		RunAsUser:                ptr.To[int64](RestoreHelperUID),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// RestoreHelperFromConfigMap reads the ConfigMap's keys over the defaults; cm may be nil. Keys: image,
// cpuRequest, memoryRequest, cpuLimit, memoryLimit; securityContext (a YAML SecurityContext replacing the
// default one), runAsUser and runAsGroup (set on top of it), imagePullSecrets (comma-separated Secret names).
// A value that cannot be used is an error naming its key, so a restore fails before it creates anything.
func RestoreHelperFromConfigMap(cm *corev1.ConfigMap) (RestoreHelper, error) {
	h := DefaultRestoreHelper
	if cm == nil {
		return h, nil
	}
	for key, field := range map[string]*string{"image": &h.Image, "cpuRequest": &h.CPURequest, "memoryRequest": &h.MemoryRequest,
		"cpuLimit": &h.CPULimit, "memoryLimit": &h.MemoryLimit} {
		if v := strings.TrimSpace(cm.Data[key]); v != "" {
			*field = v
		}
	}
	bad := func(key string, err error) (RestoreHelper, error) {
		return RestoreHelper{}, fmt.Errorf("ConfigMap %s/%s key %s: %w", cm.Namespace, RestoreHelperConfigMap, key, err)
	}
	for key, v := range map[string]string{"cpuRequest": h.CPURequest, "memoryRequest": h.MemoryRequest, "cpuLimit": h.CPULimit, "memoryLimit": h.MemoryLimit} {
		if _, err := resource.ParseQuantity(v); err != nil {
			return bad(key, fmt.Errorf("%q is not a resource quantity", v))
		}
	}
	sc := DefaultRestoreHelperSecurityContext()
	if v := strings.TrimSpace(cm.Data["securityContext"]); v != "" {
		sc = &corev1.SecurityContext{}
		if err := yaml.UnmarshalStrict([]byte(v), sc); err != nil {
			return bad("securityContext", fmt.Errorf("not a container securityContext in YAML: %w", err))
		}
	}
	for key, field := range map[string]**int64{"runAsUser": &sc.RunAsUser, "runAsGroup": &sc.RunAsGroup} {
		v := strings.TrimSpace(cm.Data[key])
		if v == "" {
			continue
		}
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 0 || id > math.MaxInt32 {
			return bad(key, fmt.Errorf("%q is not a numeric ID from 0 to %d", v, math.MaxInt32))
		}
		*field = ptr.To(id)
	}
	if sc.RunAsNonRoot != nil && *sc.RunAsNonRoot && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		return bad("runAsUser", errors.New("0 is root, which runAsNonRoot refuses: the container would never start (give a securityContext without runAsNonRoot to run the helper as root)"))
	}
	h.SecurityContext = sc
	for _, name := range splitList(cm.Data["imagePullSecrets"]) {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return bad("imagePullSecrets", fmt.Errorf("%q is not a Secret name: %s", name, strings.Join(errs, "; ")))
		}
		if !slices.Contains(h.ImagePullSecrets, name) {
			h.ImagePullSecrets = append(h.ImagePullSecrets, name)
		}
	}
	return h, nil
}

// Container builds restore-wait for a restore with this UID, mounting volumes at /restores/<volume>.
func (h RestoreHelper) Container(restoreUID string, volumes []string) (corev1.Container, error) {
	quantities := map[string]resource.Quantity{}
	for key, v := range map[string]string{"cpuRequest": h.CPURequest, "memoryRequest": h.MemoryRequest, "cpuLimit": h.CPULimit, "memoryLimit": h.MemoryLimit} {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return corev1.Container{}, fmt.Errorf("%s %q of ConfigMap %s: %w", key, v, RestoreHelperConfigMap, err)
		}
		quantities[key] = q
	}
	sc := h.SecurityContext
	if sc == nil {
		sc = DefaultRestoreHelperSecurityContext()
	}
	c := corev1.Container{
		Name:    RestoreWaitContainer,
		Image:   h.Image,
		Command: []string{"/straddle-restore-helper"},
		Args:    []string{"--restore-uid", restoreUID},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: quantities["cpuRequest"], corev1.ResourceMemory: quantities["memoryRequest"]},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: quantities["cpuLimit"], corev1.ResourceMemory: quantities["memoryLimit"]},
		},
		SecurityContext: sc.DeepCopy(),
	}
	for _, v := range volumes {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v, MountPath: RestoreHelperMountRoot + "/" + v})
	}
	return c, nil
}

// Inject gives pod restore-wait for a restore with this UID over volumes (InjectRestoreWait), and the
// helper's image pull secrets.
func (h RestoreHelper) Inject(pod *unstructured.Unstructured, restoreUID string, volumes []string) error {
	c, err := h.Container(restoreUID, volumes)
	if err != nil {
		return err
	}
	if err := InjectRestoreWait(pod, c); err != nil {
		return err
	}
	return addImagePullSecrets(pod, h.ImagePullSecrets)
}

// addImagePullSecrets appends names to the pod's spec.imagePullSecrets, leaving out the ones it has.
func addImagePullSecrets(pod *unstructured.Unstructured, names []string) error {
	if len(names) == 0 {
		return nil
	}
	refs, _, err := unstructured.NestedSlice(pod.Object, "spec", "imagePullSecrets")
	if err != nil {
		return fmt.Errorf("pod %s/%s: spec.imagePullSecrets: %w", pod.GetNamespace(), pod.GetName(), err)
	}
	for _, name := range names {
		if !slices.ContainsFunc(refs, func(r any) bool { m, ok := r.(map[string]any); return ok && m["name"] == name }) {
			refs = append(refs, map[string]any{"name": name})
		}
	}
	return unstructured.SetNestedSlice(pod.Object, refs, "spec", "imagePullSecrets")
}

// InjectRestoreWait puts c first among the pod's init containers, replacing a restore-wait container the pod
// already had (a pod backed up after an earlier restore carries one, for a restore long gone). The pod stays
// unstructured so fields this build does not know survive.
func InjectRestoreWait(pod *unstructured.Unstructured, c corev1.Container) error {
	cu, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&c)
	if err != nil {
		return fmt.Errorf("encode container %s: %w", c.Name, err)
	}
	inits, _, err := unstructured.NestedSlice(pod.Object, "spec", "initContainers")
	if err != nil {
		return fmt.Errorf("pod %s/%s: spec.initContainers: %w", pod.GetNamespace(), pod.GetName(), err)
	}
	out := []any{cu}
	for _, ic := range inits {
		if m, ok := ic.(map[string]any); ok && m["name"] == RestoreWaitContainer {
			continue
		}
		out = append(out, ic)
	}
	return unstructured.SetNestedSlice(pod.Object, out, "spec", "initContainers")
}

// podVolumeNames lists the volumes a pod object declares.
func podVolumeNames(pod *unstructured.Unstructured) []string {
	vols, _, _ := unstructured.NestedSlice(pod.Object, "spec", "volumes")
	var out []string
	for _, v := range vols {
		if m, ok := v.(map[string]any); ok {
			if name, ok := m["name"].(string); ok {
				out = append(out, name)
			}
		}
	}
	return out
}
