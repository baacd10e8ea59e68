package controller

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

var webhookTestStart = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

// webhookTestObjects: restore r1 (created at webhookTestStart, InProgress) restoring into voting, which it labelled;
// StatefulSet db and ReplicaSet web-1 it created there; StatefulSet old there from before.
func webhookTestObjects() []client.Object {
	rs := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "r1", UID: "ruid", CreationTimestamp: metav1.NewTime(webhookTestStart)},
		Spec:   v1.RestoreSpec{BackupName: "b1"},
		Status: v1.RestoreStatus{Phase: v1.PhaseInProgress, StartTimestamp: &metav1.Time{Time: webhookTestStart}}}
	after := metav1.NewTime(webhookTestStart.Add(time.Second))
	return []client.Object{
		rs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "voting", Labels: map[string]string{RestoringLabel: "r1"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "quiet"}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "voting", Name: "db", UID: "sts-uid", CreationTimestamp: after}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "voting", Name: "old", UID: "old-uid", CreationTimestamp: metav1.NewTime(webhookTestStart.Add(-time.Hour))}},
		&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "voting", Name: "web-1", UID: "rs-uid", CreationTimestamp: after}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: RestoreHelperConfigMap}, Data: map[string]string{"image": "registry.local:5000/helper:v1", "runAsUser": "1001", "imagePullSecrets": "regcred"}},
	}
}

func newWebhookTest(t *testing.T, extra ...client.Object) *RestoreWaitWebhook {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1.AddToScheme, corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	cl := fake.NewClientBuilder().WithScheme(s).WithObjects(append(webhookTestObjects(), extra...)...).Build()
	w := &RestoreWaitWebhook{Client: cl, APIReader: cl, Namespace: "straddle"}
	// The backup as storage holds it, read once per restore: the cache stands in for storage here.
	w.backedUp = map[types.UID]map[string][]backedUpPod{"ruid": matchTestBackup(t)}
	return w
}

// controlledPod is a pod as a controller creates it from its template: ownerKind/ownerName/ownerUID controls it.
func controlledPod(ns, name, ownerKind, ownerName, ownerUID string, volumes ...string) *unstructured.Unstructured {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:v1"}}, InitContainers: []corev1.Container{{Name: "init-perms", Image: "busybox"}}}}
	if ownerKind != "" {
		pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: ownerKind, Name: ownerName, UID: types.UID(ownerUID), Controller: ptr.To(true)}}
	}
	for _, v := range volumes {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	}
	u, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
	return &unstructured.Unstructured{Object: u}
}

func typedPod(t *testing.T, u *unstructured.Unstructured) *corev1.Pod {
	t.Helper()
	var pod corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

func TestWebhookPreparesAStatefulSetPod(t *testing.T) {
	w := newWebhookTest(t)
	u := controlledPod("voting", "db-1", "StatefulSet", "db", "sts-uid", "data", "tmp")
	prepared, reason, err := w.Prepare(context.Background(), u)
	if err != nil || !prepared {
		t.Fatalf("prepared=%v reason=%q err=%v", prepared, reason, err)
	}
	pod := typedPod(t, u)
	if len(pod.Spec.InitContainers) != 2 || pod.Spec.InitContainers[1].Name != "init-perms" {
		t.Fatalf("init containers %+v", pod.Spec.InitContainers)
	}
	rw := pod.Spec.InitContainers[0]
	// The same container a restored pod gets: the ConfigMap's image, this restore's UID, only the volumes
	// the backed-up pod of the same ordinal has snapshots of.
	helper, err := RestoreHelperFromConfigMap(&corev1.ConfigMap{Data: map[string]string{"image": "registry.local:5000/helper:v1", "runAsUser": "1001"}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := helper.Container("ruid", []string{"data"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(rw); string(got) != mustJSON(t, want) {
		t.Errorf("restore-wait\n%s\nwant\n%s", got, mustJSON(t, want))
	}
	if *rw.SecurityContext.RunAsUser != 1001 || len(pod.Spec.ImagePullSecrets) != 1 || pod.Spec.ImagePullSecrets[0].Name != "regcred" {
		t.Errorf("restore-wait runs as %d, pod's imagePullSecrets %v; want 1001 and regcred from the ConfigMap", *rw.SecurityContext.RunAsUser, pod.Spec.ImagePullSecrets)
	}
	if pod.Labels[v1.RestoreLabel] != "r1" || pod.Labels["app"] != "x" {
		t.Errorf("labels %v", pod.Labels)
	}
	var rv RestoredVolumes
	if err := json.Unmarshal([]byte(pod.Annotations[AnnotationRestoreVolumes]), &rv); err != nil {
		t.Fatal(err)
	}
	if rv.RestoreUID != "ruid" || rv.SourceNamespace != "voting" || len(rv.Volumes) != 1 || rv.Volumes["data"] != "s-db1-data" {
		t.Errorf("annotation %+v", rv)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWebhookLeavesPodsAlone(t *testing.T) {
	doneSnapshot := &v1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "done", Labels: map[string]string{v1.RestoreLabel: "r1"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "straddle.io/v1alpha1", Kind: "Restore", Name: "r1", UID: "ruid", Controller: ptr.To(true)}}},
		Spec:   v1.PodVolumeRestoreSpec{SourceNamespace: "voting", SnapshotID: "s-db0-data"},
		Status: v1.PodVolumeRestoreStatus{Phase: v1.VolumePhaseCompleted}}
	injected := controlledPod("voting", "db-1", "StatefulSet", "db", "sts-uid", "data")
	if _, _, err := newWebhookTest(t).Prepare(context.Background(), injected); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		pod    *unstructured.Unstructured
		reason string
	}{
		{"already injected", injected, "has restore-wait already"},
		{"no controller", controlledPod("voting", "db-1", "", "", "", "data"), "no controller"},
		{"namespace not restored into", controlledPod("quiet", "db-1", "StatefulSet", "db", "sts-uid", "data"), "no restore is restoring into the namespace"},
		{"owner there before the restore", controlledPod("voting", "old-0", "StatefulSet", "old", "old-uid", "data"), "StatefulSet old was not created by restore r1"},
		{"owner with another UID", controlledPod("voting", "db-1", "StatefulSet", "db", "other-uid", "data"), "was not created by restore r1"},
		{"owner gone", controlledPod("voting", "db-1", "StatefulSet", "gone", "g", "data"), "was not created by restore r1"},
		{"no backed-up pod of that ordinal", controlledPod("voting", "db-7", "StatefulSet", "db", "sts-uid", "data"), "0 backed-up pods of StatefulSet db have ordinal 7"},
		{"volume restored already", controlledPod("voting", "db-0", "StatefulSet", "db", "sts-uid", "data"), "restored already"},
		{"none of the backed-up volumes", controlledPod("voting", "db-1", "StatefulSet", "db", "sts-uid", "other"), "has none of them"},
		{"replicaset pod, which backed-up pod undeterminable", controlledPod("voting", "web-1-q", "ReplicaSet", "web-1", "rs-uid", "cache"), "cannot be told"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWebhookTest(t, doneSnapshot)
			before := tc.pod.DeepCopy()
			prepared, reason, err := w.Prepare(context.Background(), tc.pod)
			if err != nil || prepared || !strings.Contains(reason, tc.reason) {
				t.Fatalf("prepared=%v reason=%q err=%v; want left alone because %q", prepared, reason, err, tc.reason)
			}
			if mustJSON(t, tc.pod.Object) != mustJSON(t, before.Object) {
				t.Error("pod changed")
			}
		})
	}
	t.Run("restore ended", func(t *testing.T) {
		w := newWebhookTest(t)
		var rs v1.Restore
		ctx := context.Background()
		if err := w.APIReader.Get(ctx, client.ObjectKey{Namespace: "straddle", Name: "r1"}, &rs); err != nil {
			t.Fatal(err)
		}
		rs.Status.Phase = v1.PhaseCompleted
		if err := w.Client.Update(ctx, &rs); err != nil {
			t.Fatal(err)
		}
		if prepared, reason, err := w.Prepare(ctx, controlledPod("voting", "db-1", "StatefulSet", "db", "sts-uid", "data")); prepared || err != nil || reason != "restore r1 is Completed" {
			t.Errorf("prepared=%v reason=%q err=%v", prepared, reason, err)
		}
	})
}

func TestWebhookReplicaSetPodTakesTheUnclaimedBackedUpPod(t *testing.T) {
	// web-1-a's volume is in the restored pod still standing for it; web-1-b's pod was deleted.
	standing := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "voting", Name: "web-1-a", Labels: map[string]string{v1.RestoreLabel: "r1"},
		Annotations: map[string]string{AnnotationRestoreVolumes: `{"restoreUID":"ruid","sourceNamespace":"voting","volumes":{"cache":"s-a"}}`}}}
	w := newWebhookTest(t, standing)
	u := controlledPod("voting", "", "ReplicaSet", "web-1", "rs-uid", "cache")
	u.SetGenerateName("web-1-")
	prepared, reason, err := w.Prepare(context.Background(), u)
	if err != nil || !prepared {
		t.Fatalf("prepared=%v reason=%q err=%v", prepared, reason, err)
	}
	if got := u.GetAnnotations()[AnnotationRestoreVolumes]; !strings.Contains(got, `"cache":"s-b"`) {
		t.Errorf("annotation %s, want web-1-b's snapshot", got)
	}
}

func TestWebhookMovesRestoreWaitFirst(t *testing.T) {
	w := newWebhookTest(t)
	u := controlledPod("voting", "db-1", "StatefulSet", "db", "sts-uid", "data")
	if _, _, err := w.Prepare(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	// A sidecar injector after us put its container first; on reinvocation restore-wait goes first again.
	inits, _, _ := unstructured.NestedSlice(u.Object, "spec", "initContainers")
	inits = append([]any{map[string]any{"name": "istio-init"}}, inits...)
	_ = unstructured.SetNestedSlice(u.Object, inits, "spec", "initContainers")
	prepared, _, err := w.Prepare(context.Background(), u)
	pod := typedPod(t, u)
	if err != nil || !prepared || len(pod.Spec.InitContainers) != 3 || pod.Spec.InitContainers[0].Name != RestoreWaitContainer || pod.Spec.InitContainers[1].Name != "istio-init" {
		t.Errorf("prepared=%v err=%v init containers %+v", prepared, err, pod.Spec.InitContainers)
	}
}

func TestWebhookHandleAnswersWithAPatch(t *testing.T) {
	w := newWebhookTest(t)
	raw, _ := json.Marshal(controlledPod("voting", "db-1", "StatefulSet", "db", "sts-uid", "data").Object)
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "req", Operation: admissionv1.Create, Namespace: "voting",
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Object: runtime.RawExtension{Raw: raw}}}
	resp := w.Handle(context.Background(), req)
	if !resp.Allowed || len(resp.Patches) == 0 {
		t.Fatalf("response %+v", resp)
	}
	var paths []string
	for _, p := range resp.Patches {
		paths = append(paths, p.Path)
	}
	joined := strings.Join(paths, " ")
	for _, want := range []string{"/spec/initContainers", "/metadata/labels/straddle.io~1restore", "/metadata/annotations"} {
		if !strings.Contains(joined, want) {
			t.Errorf("patch paths %v lack %s", paths, want)
		}
	}
	req.Operation = admissionv1.Update
	if resp := w.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("update: %+v", resp)
	}
}

func TestWebhookRecordsWhyItLeftAPodAlone(t *testing.T) {
	w := newWebhookTest(t)
	rec := events.NewFakeRecorder(10)
	w.Events = rec
	u := controlledPod("voting", "web-1-q", "ReplicaSet", "web-1", "rs-uid", "cache")
	raw, _ := json.Marshal(u.Object)
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{UID: "req", Operation: admissionv1.Create, Namespace: "voting",
		Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Object: runtime.RawExtension{Raw: raw}, DryRun: ptr.To(true)}}
	if resp := w.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("dry run: %+v", resp)
	}
	if len(rec.Events) != 0 {
		t.Fatalf("a dry run recorded %q", <-rec.Events)
	}
	req.DryRun = nil
	if resp := w.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) != 0 {
		t.Fatalf("response %+v", resp)
	}
	select {
	case ev := <-rec.Events:
		if !strings.Contains(ev, "PodNotPrepared") || !strings.Contains(ev, "voting/web-1-q of ReplicaSet web-1") || !strings.Contains(ev, "cannot be told") {
			t.Errorf("event %q", ev)
		}
	default:
		t.Error("no event says why the pod got no restore-wait")
	}
}

func TestWebhookRefusesThePodOnABadHelperConfigMap(t *testing.T) {
	w := newWebhookTest(t)
	var cm corev1.ConfigMap
	if err := w.APIReader.Get(context.Background(), client.ObjectKey{Namespace: "straddle", Name: RestoreHelperConfigMap}, &cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["runAsGroup"] = "wheel"
	if err := w.Client.Update(context.Background(), &cm); err != nil {
		t.Fatal(err)
	}
	u := controlledPod("voting", "db-1", "StatefulSet", "db", "sts-uid", "data")
	prepared, _, err := w.Prepare(context.Background(), u)
	if prepared || err == nil || !strings.Contains(err.Error(), "ConfigMap straddle/straddle-restore-helper key runAsGroup") {
		t.Errorf("prepared %v, error %v; want the pod refused with the ConfigMap's key named", prepared, err)
	}
}
