package controller

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func TestSortResources(t *testing.T) {
	in := []string{"widgets.example.com", "deployments.apps", "pods", "services", "configmaps", "persistentvolumeclaims",
		"statefulsets.apps", "secrets", "rolebindings.rbac.authorization.k8s.io", "roles.rbac.authorization.k8s.io", "serviceaccounts", "limitranges", "controllerrevisions.apps"}
	for _, tc := range []struct {
		name       string
		priorities []string
		want       []string
	}{
		{"default", DefaultRestorePriorities, []string{"persistentvolumeclaims", "secrets", "configmaps", "serviceaccounts", "roles.rbac.authorization.k8s.io",
			"rolebindings.rbac.authorization.k8s.io", "limitranges", "pods", "deployments.apps", "statefulsets.apps",
			"controllerrevisions.apps", "services", "widgets.example.com"}},
		{"flag, bare names match any group", []string{"services", "deployments", "widgets.example.com"}, []string{"services", "deployments.apps", "widgets.example.com",
			"configmaps", "controllerrevisions.apps", "limitranges", "persistentvolumeclaims", "pods", "rolebindings.rbac.authorization.k8s.io",
			"roles.rbac.authorization.k8s.io", "secrets", "serviceaccounts", "statefulsets.apps"}},
		{"none: by name", nil, slices.Sorted(slices.Values(in))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SortResources(tc.priorities, in); !slices.Equal(got, tc.want) {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

func decode(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal([]byte(doc), &u.Object); err != nil {
		t.Fatal(err)
	}
	return u
}

func TestStripForRestore(t *testing.T) {
	meta := `"metadata":{"name":"x","namespace":"old","uid":"u","resourceVersion":"7","generation":3,"creationTimestamp":"2020-01-01T00:00:00Z",
		"managedFields":[{"manager":"m"}],"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"rs","uid":"o"}],
		"labels":{"app":"a"},"annotations":%s}`
	for _, tc := range []struct {
		name, resource, doc string
		gone                []string // dotted paths that must be absent
		kept                map[string]any
	}{
		{"pod", "pods", `{"apiVersion":"v1","kind":"Pod",` + fmt.Sprintf(meta, `{"straddle.io/x":"y"}`) + `,"spec":{"nodeName":"n1","containers":[{"name":"c"}]},"status":{"phase":"Running"}}`,
			[]string{"metadata.uid", "metadata.resourceVersion", "metadata.generation", "metadata.creationTimestamp", "metadata.managedFields",
				"metadata.ownerReferences", "status", "spec.nodeName"},
			map[string]any{"metadata.namespace": "new", "metadata.labels.app": "a", "metadata.annotations.straddle\\.io/x": "y"}},
		{"service", "services", `{"apiVersion":"v1","kind":"Service",` + fmt.Sprintf(meta, `{}`) + `,"spec":{"type":"NodePort","clusterIP":"10.0.0.1","clusterIPs":["10.0.0.1"],
			"ports":[{"port":80,"nodePort":30080}]}}`,
			[]string{"spec.clusterIP", "spec.clusterIPs", "spec.ports.0.nodePort", "metadata.annotations"},
			map[string]any{"spec.type": "NodePort"}},
		{"headless service", "services", `{"apiVersion":"v1","kind":"Service",` + fmt.Sprintf(meta, `{}`) + `,"spec":{"clusterIP":"None","clusterIPs":["None"]}}`,
			nil, map[string]any{"spec.clusterIP": "None"}},
		{"claim", "persistentvolumeclaims", `{"apiVersion":"v1","kind":"PersistentVolumeClaim",` +
			fmt.Sprintf(meta, `{"pv.kubernetes.io/bind-completed":"yes","pv.kubernetes.io/bound-by-controller":"yes","volume.kubernetes.io/selected-node":"n1","keep":"me"}`) +
			`,"spec":{"volumeName":"pv-1","storageClassName":"fast"}}`,
			[]string{"spec.volumeName", "metadata.annotations.pv\\.kubernetes\\.io/bind-completed", "metadata.annotations.volume\\.kubernetes\\.io/selected-node"},
			map[string]any{"spec.storageClassName": "fast", "metadata.annotations.keep": "me"}},
		{"job", "jobs.batch", `{"apiVersion":"batch/v1","kind":"Job",` + fmt.Sprintf(meta, `{}`) + `,"spec":{"selector":{"matchLabels":{"controller-uid":"u"}},
			"template":{"metadata":{"labels":{"controller-uid":"u","batch.kubernetes.io/controller-uid":"u","app":"a"}}}}}`,
			[]string{"spec.selector", "spec.template.metadata.labels.controller-uid", "spec.template.metadata.labels.batch\\.kubernetes\\.io/controller-uid"},
			map[string]any{"spec.template.metadata.labels.app": "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := decode(t, tc.doc)
			StripForRestore(u, tc.resource, "new")
			for _, p := range tc.gone {
				if _, ok := lookup(u.Object, p); ok {
					t.Errorf("%s still there: %v", p, u.Object)
				}
			}
			for p, want := range tc.kept {
				if got, _ := lookup(u.Object, p); got != want {
					t.Errorf("%s = %v, want %v", p, got, want)
				}
			}
		})
	}
}

// lookup follows a dotted path ("\." escapes a dot in a key; numbers index lists).
func lookup(obj any, path string) (any, bool) {
	var parts []string
	cur := ""
	for i := 0; i < len(path); i++ {
		switch {
		case path[i] == '\\' && i+1 < len(path):
			cur += string(path[i+1])
			i++
		case path[i] == '.':
			parts = append(parts, cur)
			cur = ""
		default:
			cur += string(path[i])
		}
	}
	parts = append(parts, cur)
	for _, p := range parts {
		switch o := obj.(type) {
		case map[string]any:
			v, ok := o[p]
			if !ok {
				return nil, false
			}
			obj = v
		case []any:
			i := 0
			for _, c := range p {
				i = i*10 + int(c-'0')
			}
			if i >= len(o) {
				return nil, false
			}
			obj = o[i]
		default:
			return nil, false
		}
	}
	return obj, true
}

func TestRestoreHelperFromConfigMap(t *testing.T) {
	if got, err := RestoreHelperFromConfigMap(nil); err != nil || !reflect.DeepEqual(got, DefaultRestoreHelper) {
		t.Errorf("no ConfigMap: %+v %v", got, err)
	}
	cm := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: RestoreHelperConfigMap}, Data: data}
	}
	got, err := RestoreHelperFromConfigMap(cm(map[string]string{"image": "registry.local/helper:1", "memoryLimit": "32Mi"}))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultRestoreHelper
	want.Image, want.MemoryLimit = "registry.local/helper:1", "32Mi"
	want.SecurityContext = DefaultRestoreHelperSecurityContext()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	bad := DefaultRestoreHelper
	bad.CPULimit = "lots"
	if _, err := bad.Container("uid", nil); err == nil {
		t.Error("a bad quantity was accepted")
	}

	// runAsUser and runAsGroup go on top of the default context, which stays restricted otherwise.
	got, err = RestoreHelperFromConfigMap(cm(map[string]string{"runAsUser": "1000", "runAsGroup": " 2000 ", "imagePullSecrets": "regcred, other,regcred"}))
	if err != nil {
		t.Fatal(err)
	}
	sc := got.SecurityContext
	if *sc.RunAsUser != 1000 || *sc.RunAsGroup != 2000 || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || sc.SeccompProfile == nil {
		t.Errorf("security context %+v", sc)
	}
	if !slices.Equal(got.ImagePullSecrets, []string{"regcred", "other"}) {
		t.Errorf("image pull secrets %q", got.ImagePullSecrets)
	}
	// securityContext replaces the default whole; runAsUser still wins over it.
	got, err = RestoreHelperFromConfigMap(cm(map[string]string{"securityContext": "runAsUser: 0\nprivileged: true\n", "runAsGroup": "7"}))
	if err != nil {
		t.Fatal(err)
	}
	if sc := got.SecurityContext; *sc.RunAsUser != 0 || !*sc.Privileged || *sc.RunAsGroup != 7 || sc.RunAsNonRoot != nil || sc.Capabilities != nil {
		t.Errorf("security context %+v", sc)
	}
	c, err := got.Container("uid", nil)
	if err != nil || !reflect.DeepEqual(c.SecurityContext, got.SecurityContext) || c.SecurityContext == got.SecurityContext {
		t.Errorf("container's security context %+v (%v), want a copy of %+v", c.SecurityContext, err, got.SecurityContext)
	}

	for _, tc := range []struct{ key, value, want string }{
		{"runAsUser", "nobody", "key runAsUser: \"nobody\" is not a numeric ID"},
		{"runAsUser", "-1", "key runAsUser"},
		{"runAsGroup", "1e3", "key runAsGroup"},
		{"runAsUser", "0", "key runAsUser: 0 is root, which runAsNonRoot refuses"},
		{"securityContext", "runAsUsr: 5", "key securityContext: not a container securityContext in YAML"},
		{"securityContext", "runAsUser: [", "key securityContext"},
		{"imagePullSecrets", "regcred,Bad_Name", "key imagePullSecrets: \"Bad_Name\" is not a Secret name"},
		{"cpuRequest", "a lot", "key cpuRequest: \"a lot\" is not a resource quantity"},
	} {
		_, err := RestoreHelperFromConfigMap(cm(map[string]string{tc.key: tc.value}))
		if err == nil || !strings.Contains(err.Error(), "ConfigMap straddle/straddle-restore-helper "+tc.want) {
			t.Errorf("%s=%q: error %v, want one with %q", tc.key, tc.value, err, tc.want)
		}
	}
}

func TestInjectAddsImagePullSecretsOnce(t *testing.T) {
	pod := decode(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"volumes":[{"name":"data"}],"containers":[{"name":"app"}],
		"imagePullSecrets":[{"name":"app-cred"},{"name":"regcred"}]}}`)
	h := DefaultRestoreHelper
	h.ImagePullSecrets = []string{"regcred", "mirror"}
	if err := h.Inject(pod, "uid", []string{"data"}); err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(pod.Object, &p); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(p.Spec.ImagePullSecrets) != "[{app-cred} {regcred} {mirror}]" {
		t.Errorf("imagePullSecrets %v", p.Spec.ImagePullSecrets)
	}
	if len(p.Spec.InitContainers) != 1 || p.Spec.InitContainers[0].Name != RestoreWaitContainer || *p.Spec.InitContainers[0].SecurityContext.RunAsUser != RestoreHelperUID {
		t.Errorf("init containers %+v", p.Spec.InitContainers)
	}
}

func TestPreparePodInjectsRestoreWait(t *testing.T) {
	r := &RestoreReconciler{}
	rs := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "r1", UID: "restore-uid"}}
	pod := decode(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"new","labels":{"app":"a","straddle.io/restore":"old"}},
		"spec":{"volumes":[{"name":"data"},{"name":"cache"},{"name":"logs"}],"containers":[{"name":"app","image":"busybox"}],
		"initContainers":[{"name":"migrate","image":"m"},{"name":"restore-wait","image":"stale"}]}}`)
	helper := RestoreHelper{Image: "registry.local/helper:1", CPURequest: "5m", MemoryRequest: "8Mi", CPULimit: "50m", MemoryLimit: "32Mi"}
	vols, err := r.preparePod(rs, pod, "old-ns", map[string]string{"data": "s1", "logs": "s2", "gone": "s3"}, helper)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(vols, []string{"data", "logs"}) {
		t.Errorf("volumes %q", vols)
	}
	var p corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(pod.Object, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.InitContainers) != 2 || p.Spec.InitContainers[0].Name != RestoreWaitContainer || p.Spec.InitContainers[1].Name != "migrate" {
		t.Fatalf("init containers %+v", p.Spec.InitContainers)
	}
	c := p.Spec.InitContainers[0]
	if c.Image != helper.Image || !slices.Equal(c.Command, []string{"/straddle-restore-helper"}) || !slices.Equal(c.Args, []string{"--restore-uid", "restore-uid"}) {
		t.Errorf("container %+v", c)
	}
	if fmt.Sprint(c.VolumeMounts) != fmt.Sprint([]corev1.VolumeMount{{Name: "data", MountPath: "/restores/data"}, {Name: "logs", MountPath: "/restores/logs"}}) {
		t.Errorf("mounts %+v", c.VolumeMounts)
	}
	if c.Resources.Requests.Cpu().String() != "5m" || c.Resources.Requests.Memory().String() != "8Mi" ||
		c.Resources.Limits.Cpu().String() != "50m" || c.Resources.Limits.Memory().String() != "32Mi" {
		t.Errorf("resources %+v", c.Resources)
	}
	sc := c.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != 65532 || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation ||
		!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("security context %+v", sc)
	}
	if p.Labels[v1.RestoreLabel] != "r1" || p.Labels["app"] != "a" {
		t.Errorf("labels %v", p.Labels)
	}
	var rv RestoredVolumes
	if err := json.Unmarshal([]byte(p.Annotations[AnnotationRestoreVolumes]), &rv); err != nil {
		t.Fatal(err)
	}
	if rv.RestoreUID != "restore-uid" || rv.SourceNamespace != "old-ns" || len(rv.Volumes) != 2 || rv.Volumes["data"] != "s1" || rv.Volumes["logs"] != "s2" {
		t.Errorf("annotation %+v", rv)
	}

	// A pod without backed-up volumes is left as it is, but loses an old restore's label.
	plain := decode(t, `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"q","labels":{"straddle.io/restore":"old"}},"spec":{"volumes":[{"name":"data"}],"containers":[{"name":"app"}]}}`)
	if vols, err := r.preparePod(rs, plain, "old-ns", nil, helper); err != nil || len(vols) != 0 {
		t.Fatalf("plain pod: %v %v", vols, err)
	}
	if _, ok := lookup(plain.Object, "spec.initContainers"); ok || len(plain.GetLabels()) != 0 {
		t.Errorf("plain pod changed: %v", plain.Object)
	}
}

func TestBackedUpVolumes(t *testing.T) {
	pvb := func(ns, pod, vol string, phase v1.VolumePhase, id string) v1.PodVolumeBackup {
		return v1.PodVolumeBackup{Spec: v1.PodVolumeBackupSpec{Pod: v1.PodReference{Namespace: ns, Name: pod}, Volume: vol},
			Status: v1.PodVolumeBackupStatus{Phase: phase, SnapshotID: id}}
	}
	got := backedUpVolumes([]v1.PodVolumeBackup{
		pvb("a", "p", "data", v1.VolumePhaseCompleted, "s1"),
		pvb("a", "p", "logs", v1.VolumePhaseFailed, ""),
		pvb("a", "p", "odd", v1.VolumePhaseCompleted, ""),
		pvb("b", "p", "data", v1.VolumePhaseCompleted, "s2"),
	})
	if len(got) != 2 || len(got["a/p"]) != 1 || got["a/p"]["data"] != "s1" || got["b/p"]["data"] != "s2" {
		t.Errorf("got %v", got)
	}
}

func TestFinishedPodsAreNotRestored(t *testing.T) {
	for _, tc := range []struct {
		resource, phase string
		skipped         bool
	}{
		{"pods", "Succeeded", true}, {"pods", "Failed", true}, {"pods", "Running", false}, {"pods", "", false}, {"jobs.batch", "Failed", false},
	} {
		obj := decode(t, fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"status":{"phase":%q}}`, tc.phase))
		if got := finishedPod(tc.resource, obj); (got != "") != tc.skipped || tc.skipped && !strings.Contains(got, tc.phase) {
			t.Errorf("%s in phase %q: %q", tc.resource, tc.phase, got)
		}
	}
}
