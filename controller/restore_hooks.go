package controller

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// InitHooksFor lists the restore's init hooks that select a restored pod with these labels in namespace
// target, as init containers, in the Restore's order.
func InitHooksFor(hooks []v1.RestoreInitHook, target string, podLabels map[string]string) ([]corev1.Container, error) {
	var out []corev1.Container
	for _, h := range hooks {
		if len(h.Namespaces) > 0 && !slices.Contains(h.Namespaces, target) {
			continue
		}
		if h.LabelSelector != nil {
			sel, err := metav1.LabelSelectorAsSelector(h.LabelSelector)
			if err != nil {
				return nil, fmt.Errorf("label selector of restore init hook %s: %w", h.Name, err)
			}
			if !sel.Matches(labels.Set(podLabels)) {
				continue
			}
		}
		out = append(out, corev1.Container{Name: h.Name, Image: h.Image, Command: h.Command})
	}
	return out, nil
}

// InjectInitHooks puts the restore's matching init hooks among the pod's init containers right after
// restore-wait (so they see the restored data), or first when the pod has no restore-wait. A container of the
// same name is replaced, so injecting twice changes nothing.
func InjectInitHooks(pod *unstructured.Unstructured, hooks []v1.RestoreInitHook) error {
	containers, err := InitHooksFor(hooks, pod.GetNamespace(), pod.GetLabels())
	if err != nil || len(containers) == 0 {
		return err
	}
	names := map[string]bool{}
	var add []any
	for i := range containers {
		cu, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&containers[i])
		if err != nil {
			return fmt.Errorf("encode init hook %s: %w", containers[i].Name, err)
		}
		names[containers[i].Name] = true
		add = append(add, cu)
	}
	inits, _, err := unstructured.NestedSlice(pod.Object, "spec", "initContainers")
	if err != nil {
		return fmt.Errorf("pod %s/%s: spec.initContainers: %w", pod.GetNamespace(), pod.GetName(), err)
	}
	var out []any
	at := 0
	for _, ic := range inits {
		m, _ := ic.(map[string]any)
		name, _ := m["name"].(string)
		if names[name] {
			continue
		}
		out = append(out, ic)
		if name == RestoreWaitContainer {
			at = len(out)
		}
	}
	out = slices.Insert(out, at, add...)
	return unstructured.SetNestedSlice(pod.Object, out, "spec", "initContainers")
}
