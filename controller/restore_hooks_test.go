package controller

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func initContainerNames(t *testing.T, pod *unstructured.Unstructured) []string {
	t.Helper()
	inits, _, err := unstructured.NestedSlice(pod.Object, "spec", "initContainers")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ic := range inits {
		out = append(out, ic.(map[string]any)["name"].(string))
	}
	return out
}

func TestInjectInitHooks(t *testing.T) {
	hooks := []v1.RestoreInitHook{
		{Name: "check", Image: "busybox", Command: []string{"sh", "-c", "test -f /data/ok"}},
		{Name: "db-only", Image: "busybox", Command: []string{"true"}, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
		{Name: "elsewhere", Image: "busybox", Command: []string{"true"}, Namespaces: []string{"other"}},
	}
	newPod := func(labels map[string]string, inits ...string) *unstructured.Unstructured {
		pod := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod"}}
		pod.SetNamespace("app")
		pod.SetName("p")
		pod.SetLabels(labels)
		var list []any
		for _, n := range inits {
			list = append(list, map[string]any{"name": n, "image": "x"})
		}
		if list != nil {
			_ = unstructured.SetNestedSlice(pod.Object, list, "spec", "initContainers")
		}
		return pod
	}
	for name, c := range map[string]struct {
		pod  *unstructured.Unstructured
		wait bool
		want []string
	}{
		"after restore-wait":            {pod: newPod(map[string]string{"app": "db"}, "own"), wait: true, want: []string{RestoreWaitContainer, "check", "db-only", "own"}},
		"first without restore-wait":    {pod: newPod(nil, "own"), want: []string{"check", "own"}},
		"replaces one of the same name": {pod: newPod(nil, "check", "own"), wait: true, want: []string{RestoreWaitContainer, "check", "own"}},
	} {
		t.Run(name, func(t *testing.T) {
			// As preparePod does: the hooks first, then restore-wait in front of them.
			if err := InjectInitHooks(c.pod, hooks); err != nil {
				t.Fatal(err)
			}
			if c.wait {
				if err := InjectRestoreWait(c.pod, corev1.Container{Name: RestoreWaitContainer, Image: "helper"}); err != nil {
					t.Fatal(err)
				}
			}
			// Twice changes nothing.
			if err := InjectInitHooks(c.pod, hooks); err != nil {
				t.Fatal(err)
			}
			if got := initContainerNames(t, c.pod); !slices.Equal(got, c.want) {
				t.Fatalf("init containers %v, want %v", got, c.want)
			}
		})
	}
	got, err := InitHooksFor(hooks, "other", nil)
	if err != nil || len(got) != 2 || got[1].Name != "elsewhere" || !slices.Equal(got[0].Command, hooks[0].Command) || got[0].Image != "busybox" {
		t.Fatalf("hooks for namespace other: %+v, %v", got, err)
	}
}
