package controller

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
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

// RestoreHelperConfigMap holds the restore-wait container's image and resources, in the install namespace.
const RestoreHelperConfigMap = "straddle-restore-helper"

// RestoreHelperMountRoot is where restore-wait sees each restored volume, as <root>/<volume>.
const RestoreHelperMountRoot = "/restores"

// RestoreHelper is the restore-wait container's image and resources, as the ConfigMap gives them.
type RestoreHelper struct {
	Image                                            string
	CPURequest, MemoryRequest, CPULimit, MemoryLimit string
}

// DefaultRestoreHelper is used for keys the ConfigMap lacks (or when there is no ConfigMap).
var DefaultRestoreHelper = RestoreHelper{
	Image:         "ghcr.io/straddle-io/straddle-restore-helper:dev",
	CPURequest:    "10m",
	MemoryRequest: "16Mi",
	CPULimit:      "100m",
	MemoryLimit:   "64Mi",
}

// RestoreHelperFromConfigMap reads the ConfigMap's keys (image, cpuRequest, memoryRequest, cpuLimit,
// memoryLimit) over the defaults; cm may be nil.
func RestoreHelperFromConfigMap(cm *corev1.ConfigMap) RestoreHelper {
	h := DefaultRestoreHelper
	if cm == nil {
		return h
	}
	for key, field := range map[string]*string{"image": &h.Image, "cpuRequest": &h.CPURequest, "memoryRequest": &h.MemoryRequest,
		"cpuLimit": &h.CPULimit, "memoryLimit": &h.MemoryLimit} {
		if v := strings.TrimSpace(cm.Data[key]); v != "" {
			*field = v
		}
	}
	return h
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
	c := corev1.Container{
		Name:    RestoreWaitContainer,
		Image:   h.Image,
		Command: []string{"/straddle-restore-helper"},
		Args:    []string{"--restore-uid", restoreUID},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: quantities["cpuRequest"], corev1.ResourceMemory: quantities["memoryRequest"]},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: quantities["cpuLimit"], corev1.ResourceMemory: quantities["memoryLimit"]},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr.To(true),
			RunAsUser:                ptr.To[int64](65532),
			ReadOnlyRootFilesystem:   ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	for _, v := range volumes {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: v, MountPath: RestoreHelperMountRoot + "/" + v})
	}
	return c, nil
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
