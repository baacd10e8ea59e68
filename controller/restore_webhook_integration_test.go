//go:build integration

package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/webhookcert"
	"github.com/straddle-io/straddle/deploy"
)

// startRestoreWebhook serves RestoreWaitWebhook on a free local port with the certificate webhookcert keeps,
// and installs the install's webhook configuration under a name of its own, pointed at it by URL and scoped
// to namespaces restore restores into (other tests' restores must not call a webhook that is gone). It
// returns how many admission requests the webhook has seen.
func startRestoreWebhook(t *testing.T, e *testEnv, restore string) *atomic.Int64 {
	t.Helper()
	objs, err := deploy.Render(deploy.Options{Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	for _, o := range objs {
		if o.GetKind() == "MutatingWebhookConfiguration" {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &cfg); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg.Name = randomName("restore-wait")
	cfg.Webhooks[0].NamespaceSelector.MatchExpressions[0].Operator = metav1.LabelSelectorOpIn
	cfg.Webhooks[0].NamespaceSelector.MatchExpressions[0].Values = []string{restore}
	e.create(&cfg)
	t.Cleanup(func() { _ = e.cl.Delete(context.Background(), &cfg) })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	certs := &webhookcert.Manager{Client: e.cl, Clock: clock.RealClock{}, Log: logr.Discard(), Namespace: e.ns, ConfigurationName: cfg.Name,
		Hosts: webhookcert.Hosts{IPs: []net.IP{net.ParseIP("127.0.0.1")}}, URL: fmt.Sprintf("https://127.0.0.1:%d%s", port, RestoreWaitWebhookPath)}
	if err := certs.Ensure(e.ctx); err != nil {
		t.Fatal(err)
	}
	server := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = certs.GetCertificate }}})
	hook := &RestoreWaitWebhook{Client: e.cl, APIReader: e.cl, Namespace: e.ns}
	calls := &atomic.Int64{}
	server.Register(RestoreWaitWebhookPath, &admission.Webhook{Handler: admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
		calls.Add(1)
		return hook.Handle(ctx, req)
	})})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- server.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	})
	waitFor(t, "webhook server", func() bool { return server.StartedChecker()(nil) == nil })
	return calls
}

// A StatefulSet's pod deleted while it waits for its data is created again by the StatefulSet controller
// (played here): the webhook gives the new pod restore-wait for the same volumes, the old pod's
// PodVolumeRestore does not count, and the restore ends when the new pod's volume is in.
func TestRestoreWebhookPreparesAStatefulSetsNewPod(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns := e.namespace("db")
	labels := map[string]string{"app": "db"}
	template := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{AnnotationBackupVolumes: "data"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres"}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, Spec: appsv1.StatefulSetSpec{
		Replicas: ptr.To[int32](1), ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: template}}
	e.create(sts)
	pb := newPod(ns, "db-0").emptyDir("data", "scratch").ann(AnnotationBackupVolumes, "data")
	pb.pod.Labels = labels
	pb.pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: sts.UID, Controller: ptr.To(true)}}
	e.pod(pb)
	bk := randomName("bk")
	e.backup(bk, v1.BackupSpec{IncludedNamespaces: []string{ns}})
	snapshot := e.completeWithSnapshot(e.waitPVBs(bk, 1)[0])
	e.waitPhase(bk, v1.PhaseCompleted)

	restore := randomName("r")
	target := randomName("db-copy")
	calls := startRestoreWebhook(t, e, restore)
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)
	// An init hook (issue 8) that the webhook adds after restore-wait too.
	re.restore(restore, v1.RestoreSpec{BackupName: bk, NamespaceMapping: map[string]string{ns: target}, Hooks: v1.RestoreHooks{InitContainers: []v1.RestoreInitHook{
		{Name: "check", Image: "busybox", Command: []string{"true"}, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}},
	}}})
	rs := re.waitResources(restore)
	var nsObj corev1.Namespace
	if err := e.cl.Get(e.ctx, client.ObjectKey{Name: target}, &nsObj); err != nil || nsObj.Labels[RestoringLabel] != restore {
		t.Fatalf("namespace %s labels %v (%v), want %s=%s", target, nsObj.Labels, err, RestoringLabel, restore)
	}
	// The restored pod, which the restore prepared itself, went through the webhook unchanged.
	if calls.Load() == 0 {
		t.Fatal("the webhook was never called for the restored pod")
	}
	old := re.bind(target, "db-0", "node-a")
	if ics := old.Spec.InitContainers; len(ics) != 2 || ics[0].Name != RestoreWaitContainer || ics[1].Name != "check" {
		t.Fatalf("restored pod's init containers %+v, want restore-wait, then the init hook check", ics)
	}
	var oldPVR v1.PodVolumeRestore
	waitFor(t, "the restored pod's PodVolumeRestore", func() bool {
		got := re.pvrs(restore)
		if len(got) == 1 {
			oldPVR = got[0]
		}
		return len(got) == 1
	})

	// The StatefulSet controller's part: the pod is deleted before its data came, and made again from the
	// template, owned by the restored StatefulSet.
	if err := e.cl.Delete(e.ctx, old, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "old pod gone", func() bool {
		return e.cl.Get(e.ctx, client.ObjectKey{Namespace: target, Name: "db-0"}, &corev1.Pod{}) != nil
	})
	re.setPVR(oldPVR.Name, v1.VolumePhaseFailed, v1.Progress{}, "pod is gone")
	time.Sleep(2 * time.Second)
	if rs := re.waitRestore(restore, "in progress", func(*v1.Restore) bool { return true }); rs.Status.Phase != v1.PhaseInProgress {
		t.Fatalf("restore ended with its pod's replacement still to come: %+v", rs.Status)
	}
	var restoredSts appsv1.StatefulSet
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: target, Name: "db"}, &restoredSts); err != nil {
		t.Fatal(err)
	}
	replacement := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: target, Name: "db-0", Labels: labels,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: restoredSts.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: *restoredSts.Spec.Template.Spec.DeepCopy()}
	e.create(replacement)
	if len(replacement.Spec.InitContainers) != 2 || replacement.Spec.InitContainers[0].Name != RestoreWaitContainer || replacement.Spec.InitContainers[1].Name != "check" ||
		len(replacement.Spec.InitContainers[0].VolumeMounts) != 1 || replacement.Spec.InitContainers[0].VolumeMounts[0].Name != "data" {
		t.Fatalf("new pod's init containers %+v, want restore-wait for volume data, then the init hook check", replacement.Spec.InitContainers)
	}
	if args := replacement.Spec.InitContainers[0].Args; len(args) != 2 || args[1] != string(rs.UID) {
		t.Errorf("restore-wait args %v", args)
	}
	var rv RestoredVolumes
	if err := json.Unmarshal([]byte(replacement.Annotations[AnnotationRestoreVolumes]), &rv); err != nil || replacement.Labels[v1.RestoreLabel] != restore ||
		rv.RestoreUID != string(rs.UID) || rv.SourceNamespace != ns || rv.Volumes["data"] != snapshot || len(rv.Volumes) != 1 {
		t.Fatalf("new pod labels %v annotation %+v (%v)", replacement.Labels, rv, err)
	}

	// A pod in a namespace no restore restores into never reaches the webhook.
	before := calls.Load()
	other := e.namespace("other")
	e.create(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "db-0",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: restoredSts.UID, Controller: ptr.To(true)}}},
		Spec: *restoredSts.Spec.Template.Spec.DeepCopy()})
	if n := calls.Load(); n != before {
		t.Errorf("the webhook was called %d times for a pod outside the restore", n-before)
	}

	// The new pod gets its node, its PodVolumeRestore, and its data; the restore completes.
	re.bind(target, "db-0", "node-b")
	var newPVR v1.PodVolumeRestore
	waitFor(t, "the new pod's PodVolumeRestore", func() bool {
		for _, p := range re.pvrs(restore) {
			if p.Spec.Pod.UID == string(replacement.UID) {
				newPVR = p
				return true
			}
		}
		return false
	})
	if newPVR.Spec.SnapshotID != snapshot || newPVR.Spec.Volume != "data" || newPVR.Spec.Node != "node-b" || newPVR.Spec.SourceNamespace != ns {
		t.Errorf("new PodVolumeRestore %+v", newPVR.Spec)
	}
	re.setPVR(newPVR.Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 3, BytesTotal: 3}, "")
	rs = re.waitRestorePhase(restore, v1.PhaseCompleted)
	if rs.Status.VolumesTotal != 1 || rs.Status.VolumesCompleted != 1 || rs.Status.VolumesFailed != 0 || len(rs.Status.Errors) != 0 {
		t.Errorf("status %+v", rs.Status)
	}
	waitFor(t, "label "+RestoringLabel+" removed", func() bool {
		var n corev1.Namespace
		return e.cl.Get(e.ctx, client.ObjectKey{Name: target}, &n) == nil && n.Labels[RestoringLabel] == ""
	})
}

// A restored pod deleted for good (nothing replaces it) fails its volumes once the grace is over.
func TestRestoreCountsLostPodsAfterTheGrace(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	re := startRestores(t, e.ctx, restConfig, e.ns, func(r *RestoreReconciler) { r.ReplacementGrace = 3 * time.Second })
	restore := randomName("r")
	target := randomName("copy")
	re.restore(restore, v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: target}})
	re.waitResources(restore)
	if err := e.cl.Delete(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: target, Name: "db-0"}}, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	rs := re.waitRestorePhase(restore, v1.PhasePartiallyFailed)
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("lost volumes failed after %s, before the grace", waited)
	}
	if rs.Status.VolumesFailed != 1 || len(rs.Status.Errors) != 1 || rs.Status.Errors[0] != "1 volumes not restored: their pods were deleted before the restore reached them, and no replacement came within 3s" {
		t.Errorf("status %+v", rs.Status)
	}
	waitFor(t, "label removed", func() bool {
		var n corev1.Namespace
		return e.cl.Get(e.ctx, client.ObjectKey{Name: target}, &n) == nil && n.Labels[RestoringLabel] == ""
	})
}

// Deleting a Restore before it ends takes its label off its namespaces, as ending does.
func TestRestoreDeletionReleasesItsNamespaces(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)
	restore := randomName("r")
	re.restore(restore, v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: randomName("copy")}})
	rs := re.waitResources(restore)
	var list corev1.NamespaceList
	if err := e.cl.List(e.ctx, &list, client.MatchingLabels{RestoringLabel: restore}); err != nil || len(list.Items) != 1 {
		t.Fatalf("namespaces labelled: %v (%v)", list.Items, err)
	}
	if err := e.cl.Delete(e.ctx, rs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "label removed", func() bool {
		return e.cl.List(e.ctx, &list, client.MatchingLabels{RestoringLabel: restore}) == nil && len(list.Items) == 0
	})
}
