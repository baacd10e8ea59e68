//go:build integration

package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

// restoreEnv runs a Restore reconciler against one API server and install namespace.
type restoreEnv struct {
	t   *testing.T
	ctx context.Context
	cl  client.Client
	ns  string
}

// startRestores runs a Restore reconciler for install namespace ns of the API server cfg reaches, until the
// test ends.
func startRestores(t *testing.T, ctx context.Context, cfg *rest.Config, ns string, tune func(*RestoreReconciler)) *restoreEnv {
	t.Helper()
	inInstall := cache.ByObject{Namespaces: map[string]cache.Config{ns: {}}}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&v1.BackupStorageLocation{}: inInstall, &v1.Backup{}: inInstall, &v1.Restore{}: inInstall, &v1.PodVolumeRestore{}: inInstall,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &RestoreReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		Events: mgr.GetEventRecorder("straddle-controller"), Namespace: ns}
	if tune != nil {
		tune(r)
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &restoreEnv{t: t, ctx: ctx, cl: cl, ns: ns}
}

func (re *restoreEnv) restore(name string, spec v1.RestoreSpec) *v1.Restore {
	re.t.Helper()
	rs := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: re.ns, Name: name}, Spec: spec}
	if err := re.cl.Create(re.ctx, rs); err != nil {
		re.t.Fatal(err)
	}
	return rs
}

func (re *restoreEnv) waitRestore(name, what string, ok func(*v1.Restore) bool) *v1.Restore {
	re.t.Helper()
	var rs v1.Restore
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err := re.cl.Get(re.ctx, client.ObjectKey{Namespace: re.ns, Name: name}, &rs); err != nil {
			re.t.Fatal(err)
		}
		if ok(&rs) {
			return &rs
		}
	}
	re.t.Fatalf("timed out waiting for restore %s %s; status %+v", name, what, rs.Status)
	return nil
}

func (re *restoreEnv) waitRestorePhase(name string, phase v1.Phase) *v1.Restore {
	re.t.Helper()
	return re.waitRestore(name, "phase "+string(phase), func(rs *v1.Restore) bool {
		if phase != v1.PhaseFailed && rs.Status.Phase == v1.PhaseFailed {
			re.t.Fatalf("restore %s failed: %q", name, rs.Status.Errors)
		}
		return rs.Status.Phase == phase
	})
}

// waitResources waits until the restore has created its objects (or ended).
func (re *restoreEnv) waitResources(name string) *v1.Restore {
	re.t.Helper()
	return re.waitRestore(name, "resources restored", func(rs *v1.Restore) bool {
		if rs.Status.Phase == v1.PhaseFailed {
			re.t.Fatalf("restore %s failed: %q", name, rs.Status.Errors)
		}
		return meta.IsStatusConditionTrue(rs.Status.Conditions, ConditionResourcesRestored) || rs.Status.Phase == v1.PhaseCompleted || rs.Status.Phase == v1.PhasePartiallyFailed
	})
}

func (re *restoreEnv) pvrs(restore string) []v1.PodVolumeRestore {
	re.t.Helper()
	var list v1.PodVolumeRestoreList
	if err := re.cl.List(re.ctx, &list, client.InNamespace(re.ns), client.MatchingLabels{v1.RestoreLabel: restore}); err != nil {
		re.t.Fatal(err)
	}
	return list.Items
}

// bind plays the scheduler: it puts the pod on a node through the binding subresource.
func (re *restoreEnv) bind(ns, name, node string) *corev1.Pod {
	re.t.Helper()
	var pod corev1.Pod
	if err := re.cl.Get(re.ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		re.t.Fatal(err)
	}
	b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}
	if err := re.cl.SubResource("binding").Create(re.ctx, &pod, b); err != nil {
		re.t.Fatalf("bind pod %s/%s: %v", ns, name, err)
	}
	return &pod
}

// setPVR plays the node-agent: it records a PodVolumeRestore's phase and progress.
func (re *restoreEnv) setPVR(name string, phase v1.VolumePhase, p v1.Progress, message string) {
	re.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pvr v1.PodVolumeRestore
		if err := re.cl.Get(re.ctx, client.ObjectKey{Namespace: re.ns, Name: name}, &pvr); err != nil {
			return err
		}
		pvr.Status.Phase, pvr.Status.Progress, pvr.Status.Message = phase, p, message
		return re.cl.Status().Update(re.ctx, &pvr)
	})
	if err != nil {
		re.t.Fatalf("update PodVolumeRestore %s: %v", name, err)
	}
}

func (re *restoreEnv) eventReasons(kind, name string) []string {
	re.t.Helper()
	var list corev1.EventList
	if err := re.cl.List(re.ctx, &list, client.InNamespace(re.ns)); err != nil {
		re.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Name == name && ev.InvolvedObject.Kind == kind {
			out = append(out, ev.Reason)
		}
	}
	return out
}

// seed is a backed-up namespace: what was in it and the backup of it.
type seed struct {
	ns, backup string
	snapshot   string // of pod db-0's volume data
	oldPodUID  string
	serviceIP  string
}

// backupSeed fills a namespace with an app (a pod with a backed-up volume and one not, a claim, a Service, a
// Deployment, a ConfigMap and a Secret) and backs it up with the Backup reconciler, playing its node-agent.
func backupSeed(t *testing.T, e *testEnv) seed {
	t.Helper()
	ns := e.namespace("app")
	e.create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"k": "v"}})
	e.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, Data: map[string][]byte{"p": []byte("x")}})
	e.create(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "claim",
		Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes", "keep": "me"}}, Spec: corev1.PersistentVolumeClaimSpec{
		VolumeName:  "pv-old",
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: mustQuantity("1Gi")}}}})
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	e.create(svc)
	labels := map[string]string{"app": "db"}
	e.create(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres"}}}}}})
	pb := newPod(ns, "db-0").emptyDir("data", "scratch").pvc("store", "claim").ann(AnnotationBackupVolumes, "data")
	pb.pod.Labels = labels
	pb.pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "db-123", UID: "rs-uid", Controller: ptr.To(true)}}
	pod := e.pod(pb)
	// A finished pod (a Job's, say) is backed up with the rest, but not restored: it would run again.
	e.pod(newPod(ns, "done").phase(corev1.PodSucceeded))

	name := randomName("bk")
	e.backup(name, v1.BackupSpec{IncludedNamespaces: []string{ns}})
	pvbs := e.waitPVBs(name, 1)
	id := e.completeWithSnapshot(pvbs[0])
	e.waitPhase(name, v1.PhaseCompleted)
	return seed{ns: ns, backup: name, snapshot: id, oldPodUID: string(pod.UID), serviceIP: svc.Spec.ClusterIP}
}

func rv(t *testing.T, o client.Object) int64 {
	t.Helper()
	n, err := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	if err != nil {
		t.Fatalf("resource version %q of %s: %v", o.GetResourceVersion(), o.GetName(), err)
	}
	return n
}

// checkRestoredObjects checks what a restore of s made in namespace target (etcd's resource versions show
// the creation order) and returns the restored pod.
func checkRestoredObjects(t *testing.T, ctx context.Context, cl client.Client, s seed, target string, rs *v1.Restore, helperImage string) *corev1.Pod {
	t.Helper()
	get := func(name string, o client.Object) client.Object {
		t.Helper()
		if err := cl.Get(ctx, client.ObjectKey{Namespace: target, Name: name}, o); err != nil {
			t.Fatalf("restored %T %s/%s: %v", o, target, name, err)
		}
		return o
	}
	cm := get("settings", &corev1.ConfigMap{}).(*corev1.ConfigMap)
	sec := get("creds", &corev1.Secret{})
	pvc := get("claim", &corev1.PersistentVolumeClaim{}).(*corev1.PersistentVolumeClaim)
	svc := get("web", &corev1.Service{}).(*corev1.Service)
	dep := get("db", &appsv1.Deployment{})
	pod := get("db-0", &corev1.Pod{}).(*corev1.Pod)
	if cm.Data["k"] != "v" {
		t.Errorf("ConfigMap data %v", cm.Data)
	}
	if pvc.Spec.VolumeName != "" || pvc.Annotations["pv.kubernetes.io/bind-completed"] != "" || pvc.Annotations["keep"] != "me" {
		t.Errorf("claim volume %q, annotations %v", pvc.Spec.VolumeName, pvc.Annotations)
	}
	if svc.Spec.Type != corev1.ServiceTypeNodePort || svc.Spec.ClusterIP == "" || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].NodePort == 0 {
		t.Errorf("service spec %+v", svc.Spec)
	}
	// Priority order: claims, Secrets, ConfigMaps, then the pod, then the Deployment; Services after all.
	order := []client.Object{pvc, sec, cm, pod, dep, svc}
	for i := 1; i < len(order); i++ {
		if rv(t, order[i-1]) >= rv(t, order[i]) {
			t.Errorf("%T %s was created after %T %s", order[i-1], order[i-1].GetName(), order[i], order[i].GetName())
		}
	}
	if pod.Spec.NodeName != "" || len(pod.OwnerReferences) != 0 || string(pod.UID) == s.oldPodUID || pod.Status.Phase == corev1.PodRunning {
		t.Errorf("pod node %q owners %v uid %s phase %s", pod.Spec.NodeName, pod.OwnerReferences, pod.UID, pod.Status.Phase)
	}
	if pod.Labels[v1.RestoreLabel] != rs.Name || pod.Labels["app"] != "db" {
		t.Errorf("pod labels %v", pod.Labels)
	}
	if len(pod.Spec.InitContainers) != 1 {
		t.Fatalf("init containers %+v", pod.Spec.InitContainers)
	}
	c := pod.Spec.InitContainers[0]
	if c.Name != RestoreWaitContainer || c.Image != helperImage || !slices.Equal(c.Command, []string{"/straddle-restore-helper"}) ||
		!slices.Equal(c.Args, []string{"--restore-uid", string(rs.UID)}) {
		t.Errorf("restore-wait %+v", c)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != "data" || c.VolumeMounts[0].MountPath != "/restores/data" {
		t.Errorf("restore-wait mounts %+v", c.VolumeMounts)
	}
	if sc := c.SecurityContext; sc == nil || !*sc.RunAsNonRoot || *sc.RunAsUser != 65532 || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("restore-wait security context %+v", sc)
	}
	return pod
}

func checkOnlyFinishedPodSkipped(t *testing.T, rs *v1.Restore, target string) {
	t.Helper()
	if sk := rs.Status.SkippedResources; len(sk) != 1 || sk[0].Resource != "pods" || sk[0].Namespace != target || sk[0].Name != "done" ||
		!strings.Contains(sk[0].Reason, "Succeeded") {
		t.Errorf("skipped %+v", sk)
	}
}

func TestRestoreWithNamespaceMapping(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	e.create(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: RestoreHelperConfigMap}, Data: map[string]string{
		"image": "registry.local:5000/helper:1", "cpuRequest": "5m", "memoryLimit": "48Mi"}})
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)
	target := randomName("copy")

	// The original namespace is still there, with all its objects, while its copy is made.
	re.restore("copy", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: target}})
	rs := re.waitResources("copy")
	if rs.Status.Phase != v1.PhaseInProgress || rs.Status.VolumesTotal != 1 || rs.Status.StartTimestamp == nil || len(rs.Status.Errors) != 0 {
		t.Fatalf("status %+v", rs.Status)
	}
	counts := map[string]int{}
	for _, c := range rs.Status.Resources {
		counts[c.Resource] = c.Count
	}
	for _, res := range []string{"namespaces", "configmaps", "secrets", "persistentvolumeclaims", "services", "deployments.apps", "pods"} {
		if counts[res] != 1 {
			t.Errorf("%s created %d, want 1 (counts %v)", res, counts[res], rs.Status.Resources)
		}
	}
	checkOnlyFinishedPodSkipped(t, rs, target)
	pod := checkRestoredObjects(t, e.ctx, e.cl, s, target, rs, "registry.local:5000/helper:1")
	c := pod.Spec.InitContainers[0]
	if c.Resources.Requests.Cpu().String() != "5m" || c.Resources.Limits.Memory().String() != "48Mi" || c.Resources.Requests.Memory().String() != DefaultRestoreHelper.MemoryRequest {
		t.Errorf("restore-wait resources %+v", c.Resources)
	}

	// No PodVolumeRestore until the pod has a node.
	time.Sleep(time.Second)
	if got := re.pvrs("copy"); len(got) != 0 {
		t.Fatalf("PodVolumeRestores before the pod was bound: %v", got)
	}
	re.bind(target, "db-0", "node-b")
	var pvr v1.PodVolumeRestore
	waitFor(t, "PodVolumeRestore", func() bool {
		got := re.pvrs("copy")
		if len(got) == 1 {
			pvr = got[0]
		}
		return len(got) == 1
	})
	if pvr.Name != PodVolumeBackupName("copy", string(pod.UID), "data") || pvr.Labels[v1.NodeLabel] != "node-b" {
		t.Errorf("name %s labels %v", pvr.Name, pvr.Labels)
	}
	if ref := metav1.GetControllerOf(&pvr); ref == nil || ref.Kind != "Restore" || ref.Name != "copy" || ref.UID != rs.UID {
		t.Errorf("controller reference %+v", ref)
	}
	want := v1.PodVolumeRestoreSpec{Node: "node-b", Pod: v1.PodReference{Namespace: target, Name: "db-0", UID: string(pod.UID)}, Volume: "data",
		StorageLocation: "default", SnapshotID: s.snapshot, SourceNamespace: s.ns}
	if pvr.Spec != want {
		t.Errorf("spec %+v\nwant %+v", pvr.Spec, want)
	}
	re.setPVR(pvr.Name, v1.VolumePhaseInProgress, v1.Progress{BytesDone: 5, BytesTotal: 10, FilesDone: 1, FilesTotal: 2}, "")
	re.waitRestore("copy", "progress", func(rs *v1.Restore) bool {
		return rs.Status.Progress.BytesDone == 5 && rs.Status.Progress.FilesTotal == 2
	})
	re.setPVR(pvr.Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 10, BytesTotal: 10, FilesDone: 2, FilesTotal: 2}, "")
	rs = re.waitRestorePhase("copy", v1.PhaseCompleted)
	if rs.Status.VolumesCompleted != 1 || rs.Status.VolumesFailed != 0 || rs.Status.CompletionTimestamp == nil || rs.Status.Progress.BytesDone != 10 {
		t.Errorf("status %+v", rs.Status)
	}
	waitFor(t, "events", func() bool {
		got := re.eventReasons("Restore", "copy")
		return slices.Contains(got, "Started") && slices.Contains(got, "ResourcesRestored") && slices.Contains(got, "VolumeCompleted") && slices.Contains(got, "Completed")
	})
	// The original is untouched.
	var orig corev1.Pod
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: s.ns, Name: "db-0"}, &orig); err != nil || string(orig.UID) != s.oldPodUID || len(orig.Spec.InitContainers) != 0 {
		t.Errorf("original pod %v %s %v", err, orig.UID, orig.Spec.InitContainers)
	}
}

func TestRestoreSkipsExistingObjects(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)
	// Into the original namespace, where everything still is: nothing is created, every object is reported.
	re.restore("again", v1.RestoreSpec{BackupName: s.backup, IncludedNamespaces: []string{"*"}})
	rs := re.waitRestorePhase("again", v1.PhaseCompleted)
	if len(rs.Status.Resources) != 0 || rs.Status.VolumesTotal != 0 {
		t.Errorf("created %v, volumes %d", rs.Status.Resources, rs.Status.VolumesTotal)
	}
	skipped := map[string]string{}
	for _, sk := range rs.Status.SkippedResources {
		skipped[sk.Resource+"/"+sk.Namespace+"/"+sk.Name] = sk.Reason
	}
	for _, key := range []string{"pods/" + s.ns + "/db-0", "configmaps/" + s.ns + "/settings", "deployments.apps/" + s.ns + "/db", "services/" + s.ns + "/web"} {
		if skipped[key] != "already exists" {
			t.Errorf("%s skipped for %q; skipped %v", key, skipped[key], skipped)
		}
	}
	if len(rs.Status.Warnings) != 1 || !strings.Contains(rs.Status.Warnings[0], "db-0") || !strings.Contains(rs.Status.Warnings[0], "already exists") {
		t.Errorf("warnings %q", rs.Status.Warnings)
	}

	// Excluded namespaces are left alone.
	re.restore("none", v1.RestoreSpec{BackupName: s.backup, ExcludedNamespaces: []string{s.ns}, NamespaceMapping: map[string]string{s.ns: randomName("never")}})
	rs = re.waitRestorePhase("none", v1.PhaseCompleted)
	if len(rs.Status.Resources) != 0 || len(rs.Status.SkippedResources) != 0 {
		t.Errorf("excluded namespace restored: %+v", rs.Status)
	}
}

func TestRestorePartiallyFailsOnVolumes(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	re := startRestores(t, e.ctx, restConfig, e.ns, func(r *RestoreReconciler) { r.VolumeTimeout = 3 * time.Second })
	failed, unbound := randomName("failed"), randomName("unbound")

	re.restore("fails", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: failed}})
	re.waitResources("fails")
	re.bind(failed, "db-0", "node-b")
	var pvrs []v1.PodVolumeRestore
	waitFor(t, "PodVolumeRestore", func() bool { pvrs = re.pvrs("fails"); return len(pvrs) == 1 })
	re.setPVR(pvrs[0].Name, v1.VolumePhaseFailed, v1.Progress{}, "disk full")
	rs := re.waitRestorePhase("fails", v1.PhasePartiallyFailed)
	if rs.Status.VolumesFailed != 1 || len(rs.Status.Errors) != 1 || !strings.Contains(rs.Status.Errors[0], "disk full") {
		t.Errorf("status %+v", rs.Status)
	}
	waitFor(t, "VolumeFailed event", func() bool { return slices.Contains(re.eventReasons("Restore", "fails"), "VolumeFailed") })

	// A pod that never gets a node does not hold the restore forever.
	re.restore("unbound", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: unbound}})
	rs = re.waitRestorePhase("unbound", v1.PhasePartiallyFailed)
	if rs.Status.VolumesFailed != 1 || len(rs.Status.Errors) != 1 || !strings.Contains(rs.Status.Errors[0], "not scheduled to a node within 3s") {
		t.Errorf("status %+v", rs.Status)
	}
	if got := re.pvrs("unbound"); len(got) != 0 {
		t.Errorf("PodVolumeRestores of an unbound pod: %v", got)
	}
}

func TestRestoreOfMissingBackupFails(t *testing.T) {
	e := newEnv(t, nil, nil)
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)
	re.restore("lost", v1.RestoreSpec{BackupName: "no-such-backup"})
	rs := re.waitRestorePhase("lost", v1.PhaseFailed)
	if len(rs.Status.Errors) != 1 || !strings.Contains(rs.Status.Errors[0], "backup no-such-backup not found") || !strings.Contains(rs.Status.Errors[0], "looked in default") {
		t.Errorf("errors %q", rs.Status.Errors)
	}
	// A backup that has not finished is not restorable either.
	// (Its location does not exist, so it stays New or fails: it never completes.)
	e.create(&v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "broken"}, Spec: v1.BackupSpec{StorageLocation: "nowhere"}})
	re.restore("early", v1.RestoreSpec{BackupName: "broken"})
	rs = re.waitRestorePhase("early", v1.PhaseFailed)
	if len(rs.Status.Errors) != 1 || !strings.Contains(rs.Status.Errors[0], "only a Completed or PartiallyFailed backup can be restored") {
		t.Errorf("errors %q", rs.Status.Errors)
	}
	waitFor(t, "Failed event", func() bool { return slices.Contains(re.eventReasons("Restore", "lost"), "Failed") })
}

// TestRestoreInFreshClusterFromMinIO is the migration: a second control plane, with no Backup objects, a
// storage location on the bucket the first cluster backed up to, and none of the namespace's objects.
func TestRestoreInFreshClusterFromMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	minioLocation := func(cl client.Client, ns, name string) *v1.BackupStorageLocation {
		cred := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "straddle-storage-credentials"}, Data: map[string][]byte{
			"cloud": fmt.Appendf(nil, "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)}}
		if err := cl.Create(context.Background(), cred); err != nil {
			t.Fatal(err)
		}
		return &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.BackupStorageLocationSpec{
			Provider: "s3", Default: true,
			S3: &v1.S3Location{Endpoint: "http://" + srv.Endpoint, Bucket: bucket, Prefix: "cluster", ForcePathStyle: true,
				CredentialsSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: cred.Name}, Key: "cloud"}},
			RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "straddle-repository-password"}, Key: "password"},
		}}
	}
	cl1, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil, func(ns string) *v1.BackupStorageLocation { return minioLocation(cl1, ns, "minio") })
	s := backupSeed(t, e)

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "bin")
	}
	env2 := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{filepath.Join("..", "deploy", "crds")}, ErrorIfCRDPathMissing: true}
	cfg2, err := env2.Start()
	if err != nil {
		t.Fatalf("start the second control plane: %v", err)
	}
	t.Cleanup(func() { _ = env2.Stop() })
	cl2, err := client.New(cfg2, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	install := "straddle"
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: install}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: "straddle-repository-password"}, Data: map[string][]byte{"password": []byte(testPassword)}},
		// A location that does not hold the backup comes first by name: the search goes on to the next.
		&v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: install, Name: "aaa-empty"}, Spec: v1.BackupStorageLocationSpec{
			Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: t.TempDir()}}},
	} {
		if err := cl2.Create(e.ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl2.Create(e.ctx, minioLocation(cl2, install, "shared")); err != nil {
		t.Fatal(err)
	}
	if err := cl2.Get(e.ctx, client.ObjectKey{Name: s.ns}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace %s in the fresh cluster: %v", s.ns, err)
	}
	re := startRestores(t, e.ctx, cfg2, install, nil)
	re.restore("migrate", v1.RestoreSpec{BackupName: s.backup})
	rs := re.waitResources("migrate")
	if rs.Status.Phase != v1.PhaseInProgress || rs.Status.VolumesTotal != 1 || len(rs.Status.Errors) != 0 {
		t.Fatalf("status %+v", rs.Status)
	}
	pod := checkRestoredObjects(t, e.ctx, cl2, s, s.ns, rs, DefaultRestoreHelper.Image)
	re.bind(s.ns, "db-0", "new-node")
	var pvrs []v1.PodVolumeRestore
	waitFor(t, "PodVolumeRestore", func() bool { pvrs = re.pvrs("migrate"); return len(pvrs) == 1 })
	if sp := pvrs[0].Spec; sp.StorageLocation != "shared" || sp.SourceNamespace != s.ns || sp.SnapshotID != s.snapshot || sp.Pod.UID != string(pod.UID) || sp.Node != "new-node" {
		t.Errorf("spec %+v", sp)
	}
	re.setPVR(pvrs[0].Name, v1.VolumePhaseCompleted, v1.Progress{}, "")
	re.waitRestorePhase("migrate", v1.PhaseCompleted)
}

// deleteNamespace deletes a namespace for good, doing what kube-controller-manager would (envtest has none):
// its objects are deleted, then the namespace is finalized.
func deleteNamespace(t *testing.T, ctx context.Context, cfg *rest.Config, cl client.Client, ns string) {
	t.Helper()
	for _, list := range []client.ObjectList{&corev1.PodList{}, &appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.PersistentVolumeClaimList{},
		&corev1.ConfigMapList{}, &corev1.SecretList{}} {
		if err := cl.List(ctx, list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		items, err := meta.ExtractList(list)
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range items {
			o := item.(client.Object)
			if len(o.GetFinalizers()) > 0 {
				o.SetFinalizers(nil)
				if err := cl.Update(ctx, o); err != nil {
					t.Fatal(err)
				}
			}
			if err := cl.Delete(ctx, o, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
		}
	}
	if err := cl.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var nsObj corev1.Namespace
	if err := cl.Get(ctx, client.ObjectKey{Name: ns}, &nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Spec.Finalizers = nil
	if _, err := cs.CoreV1().Namespaces().Finalize(ctx, &nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("finalize namespace %s: %v", ns, err)
	}
	waitFor(t, "namespace "+ns+" gone", func() bool {
		return apierrors.IsNotFound(cl.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
	})
}

// TestRestoreAfterNamespaceDeleted is the scene users rehearse: the namespace is deleted by mistake, and the
// restore brings it back where it was.
func TestRestoreAfterNamespaceDeleted(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	deleteNamespace(t, e.ctx, restConfig, e.cl, s.ns)
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)
	re.restore("oops", v1.RestoreSpec{BackupName: s.backup, IncludedNamespaces: []string{s.ns}})
	rs := re.waitResources("oops")
	if rs.Status.Phase != v1.PhaseInProgress || rs.Status.VolumesTotal != 1 || len(rs.Status.Errors) != 0 {
		t.Fatalf("status %+v", rs.Status)
	}
	checkOnlyFinishedPodSkipped(t, rs, s.ns)
	pod := checkRestoredObjects(t, e.ctx, e.cl, s, s.ns, rs, DefaultRestoreHelper.Image)
	re.bind(s.ns, "db-0", "node-a")
	var pvrs []v1.PodVolumeRestore
	waitFor(t, "PodVolumeRestore", func() bool { pvrs = re.pvrs("oops"); return len(pvrs) == 1 })
	if sp := pvrs[0].Spec; sp.Pod.UID != string(pod.UID) || sp.SourceNamespace != s.ns || sp.Pod.Namespace != s.ns {
		t.Errorf("spec %+v", sp)
	}
	re.setPVR(pvrs[0].Name, v1.VolumePhaseCompleted, v1.Progress{}, "")
	re.waitRestorePhase("oops", v1.PhaseCompleted)
}
