//go:build integration

package controller

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
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
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/controller/resources"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

// One API server for the package; each test gets its own install namespace, storage location and
// controller, so caps and storage never mix between tests.
var (
	restConfig *rest.Config
	scheme     = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1.AddToScheme(scheme)
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "bin")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{filepath.Join("..", "deploy", "crds")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "start kube-apiserver and etcd from %s: %v\n", assets, err)
		os.Exit(1)
	}
	restConfig = cfg
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

const testPassword = "test-repository-password"

type testEnv struct {
	t    *testing.T
	ctx  context.Context
	cl   client.Client
	ns   string // install namespace
	loc  *v1.BackupStorageLocation
	rec  *BackupReconciler
	stop func()
	// managerConfig, when set, is what the next startController talks to the API server with.
	managerConfig *rest.Config
}

func randomName(prefix string) string {
	return prefix + "-" + strings.ToLower(rand.Text()[:8])
}

// newEnv creates an install namespace with a filesystem storage location (or the one loc makes) and runs a
// Backup reconciler for it until the test ends.
func newEnv(t *testing.T, tune func(*BackupReconciler), loc func(ns string) *v1.BackupStorageLocation) *testEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, ctx: ctx, cl: cl, ns: randomName("straddle")}
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}})
	e.create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "straddle-repository-password"}, Data: map[string][]byte{"password": []byte(testPassword)}})
	if loc == nil {
		loc = func(ns string) *v1.BackupStorageLocation {
			return &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}, Spec: v1.BackupStorageLocationSpec{
				Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: t.TempDir()}, Default: true,
				RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "straddle-repository-password"}, Key: "password"},
			}}
		}
	}
	e.loc = loc(e.ns)
	e.create(e.loc)

	e.stop = e.startController(tune)
	t.Cleanup(func() { e.stop() })
	return e
}

// startController runs a Backup reconciler for the install namespace until stop is called.
func (e *testEnv) startController(tune func(*BackupReconciler)) (stop func()) {
	t := e.t
	t.Helper()
	inInstall := cache.ByObject{Namespaces: map[string]cache.Config{e.ns: {}}}
	cfg := restConfig
	if e.managerConfig != nil {
		cfg = e.managerConfig
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&v1.BackupStorageLocation{}: inInstall, &v1.Backup{}: inInstall, &v1.PodVolumeBackup{}: inInstall, &v1.BackupRepository{}: inInstall,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	e.rec = &BackupReconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: clock.RealClock{},
		Events: mgr.GetEventRecorder("straddle-controller"), Namespace: e.ns, CapacityPoll: 200 * time.Millisecond,
		Resources: &resources.Collector{Discovery: disco, Dynamic: dyn},
	}
	if tune != nil {
		tune(e.rec)
	}
	if err := e.rec.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	}
}

func (e *testEnv) create(o client.Object) {
	e.t.Helper()
	if err := e.cl.Create(e.ctx, o); err != nil {
		e.t.Fatalf("create %T %s: %v", o, o.GetName(), err)
	}
}

func (e *testEnv) namespace(prefix string) string {
	e.t.Helper()
	ns := randomName(prefix)
	e.create(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	return ns
}

// pod creates b's pod with one container and sets its phase, as a kubelet would.
func (e *testEnv) pod(b *podBuilder) *corev1.Pod {
	e.t.Helper()
	p := b.build()
	p.UID = ""
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "busybox"}}
	phase := p.Status.Phase
	e.create(&p)
	p.Status.Phase = phase
	if err := e.cl.Status().Update(e.ctx, &p); err != nil {
		e.t.Fatalf("set phase of pod %s: %v", p.Name, err)
	}
	return &p
}

func (e *testEnv) backup(name string, spec v1.BackupSpec) {
	e.t.Helper()
	e.create(&v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}, Spec: spec})
}

func (e *testEnv) get(name string) *v1.Backup {
	e.t.Helper()
	var b v1.Backup
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &b); err != nil {
		e.t.Fatalf("get backup %s: %v", name, err)
	}
	return &b
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (e *testEnv) waitBackup(name, what string, ok func(*v1.Backup) bool) *v1.Backup {
	e.t.Helper()
	var b *v1.Backup
	waitFor(e.t, "backup "+name+" "+what, func() bool {
		b = e.get(name)
		return ok(b)
	})
	return b
}

func (e *testEnv) waitPhase(name string, phase v1.Phase) *v1.Backup {
	e.t.Helper()
	return e.waitBackup(name, "phase "+string(phase), func(b *v1.Backup) bool { return b.Status.Phase == phase })
}

func (e *testEnv) pvbs(backup string) []v1.PodVolumeBackup {
	e.t.Helper()
	var list v1.PodVolumeBackupList
	if err := e.cl.List(e.ctx, &list, client.InNamespace(e.ns), client.MatchingLabels{v1.BackupLabel: backup}); err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

func (e *testEnv) waitPVBs(backup string, n int) []v1.PodVolumeBackup {
	e.t.Helper()
	var got []v1.PodVolumeBackup
	waitFor(e.t, fmt.Sprintf("%d PodVolumeBackups of %s", n, backup), func() bool {
		got = e.pvbs(backup)
		return len(got) == n
	})
	return got
}

// setPVB plays the node-agent: it records a PodVolumeBackup's phase and progress.
func (e *testEnv) setPVB(name string, phase v1.VolumePhase, p v1.Progress, snapshotID, message string) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var pvb v1.PodVolumeBackup
		if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pvb); err != nil {
			return err
		}
		pvb.Status.Phase, pvb.Status.Progress, pvb.Status.SnapshotID, pvb.Status.Message = phase, p, snapshotID, message
		return e.cl.Status().Update(e.ctx, &pvb)
	})
	if err != nil {
		e.t.Fatalf("update PodVolumeBackup %s: %v", name, err)
	}
}

func (e *testEnv) repository(namespace string) *repo.Repository {
	e.t.Helper()
	r, err := bsl.OpenRepository(e.ctx, e.cl, e.loc, namespace, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

// snapshot backs up a small directory into namespace's repository with tags, as a node-agent would.
func (e *testEnv) snapshot(namespace string, tags map[string]string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "file"), []byte(rand.Text()), 0o644); err != nil {
		e.t.Fatal(err)
	}
	r := e.repository(namespace)
	var id string
	err := lock.WithLock(e.ctx, r, lock.Shared, "backup", lock.Options{}, func(ctx context.Context) error {
		if err := r.LoadIndex(ctx); err != nil {
			return err
		}
		res, err := backup.Run(ctx, r, backup.Options{Path: dir, Host: "test", Tags: tags})
		if err != nil {
			return err
		}
		id = res.Snapshot.ID.String()
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	// Snapshot times have a resolution the next one must be past, so "newest" is unambiguous.
	time.Sleep(10 * time.Millisecond)
	return id
}

func (e *testEnv) storage(sub string) storage.Backend {
	e.t.Helper()
	be, err := bsl.OpenStorage(e.ctx, e.cl, e.loc, sub)
	if err != nil {
		e.t.Fatal(err)
	}
	return be
}

func (e *testEnv) objects(sub string) []string {
	e.t.Helper()
	var names []string
	if err := e.storage(sub).List(e.ctx, "", func(i storage.Info) error { names = append(names, i.Name); return nil }); err != nil {
		e.t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func (e *testEnv) eventReasons(backup string) []string {
	e.t.Helper()
	var list corev1.EventList
	if err := e.cl.List(e.ctx, &list, client.InNamespace(e.ns)); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Name == backup && ev.InvolvedObject.Kind == "Backup" {
			out = append(out, ev.Reason)
		}
	}
	return out
}

func mustQuantity(s string) resource.Quantity { return resource.MustParse(s) }

func findPVB(t *testing.T, pvbs []v1.PodVolumeBackup, pod, volume string) *v1.PodVolumeBackup {
	t.Helper()
	for i := range pvbs {
		if pvbs[i].Spec.Pod.Name == pod && pvbs[i].Spec.Volume == volume {
			return &pvbs[i]
		}
	}
	t.Fatalf("no PodVolumeBackup of %s/%s among %d", pod, volume, len(pvbs))
	return nil
}

func TestBackupOfAnnotatedVolumes(t *testing.T) {
	e := newEnv(t, nil, nil)
	a, b, c := e.namespace("a"), e.namespace("b"), e.namespace("c")
	e.create(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: a, Name: "claim"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: mustQuantity("1Gi")}}}})
	p1 := e.pod(newPod(a, "p1").emptyDir("data").pvc("cache", "claim").vol("sec", corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}).
		ann(AnnotationBackupVolumes, "data,cache,sec,gone").ann(AnnotationExcludePatterns, "*.tmp,cache/**"))
	e.pod(newPod(a, "p2").emptyDir("logs", "other").ann(VeleroAnnotationBackupVolumes, "logs"))
	e.pod(func() *podBuilder {
		pb := newPod(a, "p3").emptyDir("data").ann(AnnotationBackupVolumes, "data")
		pb.pod.Labels = map[string]string{"tier": "skip"}
		return pb
	}())
	e.pod(newPod(b, "p4").emptyDir("data").ann(AnnotationBackupVolumes, "data").phase(corev1.PodPending))
	e.pod(newPod(c, "p5").emptyDir("data").ann(AnnotationBackupVolumes, "data"))

	// Earlier snapshots: the claim's, and two of p2's logs of which the newer is the parent.
	claimParent := e.snapshot(a, map[string]string{bsl.TagPVC: "claim", bsl.TagPod: "old-pod", bsl.TagVolume: "cache"})
	e.snapshot(a, map[string]string{bsl.TagPod: "p2", bsl.TagVolume: "logs"})
	logsParent := e.snapshot(a, map[string]string{bsl.TagPod: "p2", bsl.TagVolume: "logs"})
	e.snapshot(a, map[string]string{bsl.TagPod: "p2", bsl.TagVolume: "other"})

	e.backup("nightly", v1.BackupSpec{IncludedNamespaces: []string{a, b, c}, ExcludedNamespaces: []string{c},
		LabelSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpDoesNotExist}}}})
	pvbs := e.waitPVBs("nightly", 3)
	bk := e.waitBackup("nightly", "planned", func(b *v1.Backup) bool {
		return meta.IsStatusConditionTrue(b.Status.Conditions, ConditionVolumesPlanned)
	})
	if bk.Status.Phase != v1.PhaseInProgress || bk.Status.VolumesTotal != 3 || bk.Spec.StorageLocation != "default" || bk.Status.StartTimestamp == nil {
		t.Fatalf("backup after planning: phase %s, total %d, location %q, started %v", bk.Status.Phase, bk.Status.VolumesTotal, bk.Spec.StorageLocation, bk.Status.StartTimestamp)
	}
	if want := bk.Status.StartTimestamp.Add(DefaultBackupTTL); bk.Status.Expiration == nil || !bk.Status.Expiration.Time.Equal(want) {
		t.Errorf("expiration %v, want %v", bk.Status.Expiration, want)
	}
	if len(bk.Status.Warnings) != 1 || !strings.Contains(bk.Status.Warnings[0], `"gone"`) {
		t.Errorf("warnings %q", bk.Status.Warnings)
	}
	skips := map[string]string{}
	for _, s := range bk.Status.SkippedVolumes {
		skips[s.Namespace+"/"+s.Pod+"/"+s.Volume] = s.Reason
	}
	if len(skips) != 2 || !strings.Contains(skips[a+"/p1/sec"], "secret") || !strings.Contains(skips[b+"/p4/"], "Pending") {
		t.Errorf("skipped %+v", bk.Status.SkippedVolumes)
	}

	cache := findPVB(t, pvbs, "p1", "cache")
	if cache.Name != PodVolumeBackupName("nightly", string(p1.UID), "cache") {
		t.Errorf("name %s", cache.Name)
	}
	if ref := metav1.GetControllerOf(cache); ref == nil || ref.Kind != "Backup" || ref.Name != "nightly" || ref.UID != bk.UID {
		t.Errorf("controller reference %+v", ref)
	}
	if cache.Labels[v1.BackupLabel] != "nightly" || cache.Labels[v1.NodeLabel] != "node-a" || cache.Spec.Node != "node-a" {
		t.Errorf("labels %v node %s", cache.Labels, cache.Spec.Node)
	}
	if cache.Spec.Pod != (v1.PodReference{Namespace: a, Name: "p1", UID: string(p1.UID)}) || cache.Spec.PVC != "claim" || cache.Spec.StorageLocation != "default" {
		t.Errorf("spec %+v", cache.Spec)
	}
	wantTags := map[string]string{bsl.TagBackup: "nightly", bsl.TagNamespace: a, bsl.TagPod: "p1", bsl.TagPodUID: string(p1.UID), bsl.TagVolume: "cache", bsl.TagPVC: "claim"}
	if fmt.Sprint(cache.Spec.Tags) != fmt.Sprint(wantTags) {
		t.Errorf("tags %v, want %v", cache.Spec.Tags, wantTags)
	}
	if !slices.Equal(cache.Spec.ExcludePatterns, []string{"*.tmp", "cache/**"}) {
		t.Errorf("exclude patterns %q", cache.Spec.ExcludePatterns)
	}
	if cache.Spec.ParentSnapshotID != claimParent {
		t.Errorf("parent of the claim %q, want %s", cache.Spec.ParentSnapshotID, claimParent)
	}
	data := findPVB(t, pvbs, "p1", "data")
	if data.Spec.ParentSnapshotID != "" || data.Spec.PVC != "" || data.Spec.Tags[bsl.TagPVC] != "" {
		t.Errorf("p1/data: parent %q pvc %q tags %v", data.Spec.ParentSnapshotID, data.Spec.PVC, data.Spec.Tags)
	}
	logs := findPVB(t, pvbs, "p2", "logs")
	if logs.Spec.ParentSnapshotID != logsParent {
		t.Errorf("parent of p2/logs %q, want %s", logs.Spec.ParentSnapshotID, logsParent)
	}
	var br v1.BackupRepository
	waitFor(t, "BackupRepository Ready", func() bool {
		return e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "default-" + a}, &br) == nil && br.Status.Phase == "Ready"
	})
	if br.Spec.StorageLocation != "default" || br.Spec.VolumeNamespace != a {
		t.Errorf("BackupRepository spec %+v", br.Spec)
	}

	// Two volumes done, one still running: never Completed, and progress is the sum.
	e.setPVB(data.Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 10, BytesTotal: 10, FilesDone: 1, FilesTotal: 1}, "s1", "")
	e.setPVB(cache.Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 20, BytesTotal: 20, FilesDone: 2, FilesTotal: 2}, "s2", "")
	e.setPVB(logs.Name, v1.VolumePhaseInProgress, v1.Progress{BytesDone: 5, BytesTotal: 100, FilesDone: 1, FilesTotal: 9}, "", "")
	bk = e.waitBackup("nightly", "progress summed", func(b *v1.Backup) bool {
		return b.Status.Progress == v1.Progress{BytesDone: 35, BytesTotal: 130, FilesDone: 4, FilesTotal: 12}
	})
	if bk.Status.VolumesCompleted != 2 || bk.Status.VolumesFailed != 0 {
		t.Errorf("counts %d completed %d failed", bk.Status.VolumesCompleted, bk.Status.VolumesFailed)
	}
	time.Sleep(time.Second)
	if bk = e.get("nightly"); bk.Status.Phase != v1.PhaseInProgress {
		t.Fatalf("phase %s while a volume is InProgress", bk.Status.Phase)
	}
	if objs := e.objects(bsl.BackupPath("nightly")); len(objs) != 0 {
		t.Errorf("stored %v before the backup ended", objs)
	}

	e.setPVB(logs.Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 100, BytesTotal: 100, FilesDone: 9, FilesTotal: 9}, "s3", "")
	bk = e.waitPhase("nightly", v1.PhaseCompleted)
	if bk.Status.VolumesCompleted != 3 || bk.Status.CompletionTimestamp == nil || bk.Status.Progress.BytesDone != 130 {
		t.Errorf("completed status %+v", bk.Status)
	}
	if got := e.objects(bsl.BackupPath("nightly")); !slices.Equal(got, []string{BackupMetadataName, PodVolumeBackupsName, ResourcesArchiveName}) {
		t.Fatalf("stored %v", got)
	}
	checkStoredBackup(t, e, "nightly", bk, []string{"pods/" + a + "/p1.json", "pods/" + a + "/p3.json", "pods/" + b + "/p4.json", "persistentvolumeclaims/" + a + "/claim.json"},
		[]string{"pods/" + c + "/p5.json"})
	counts := map[string]int{}
	for _, rc := range bk.Status.Resources {
		counts[rc.Resource] = rc.Count
	}
	if counts["pods"] != 4 || counts["persistentvolumeclaims"] != 1 || counts["events"] != 0 {
		t.Errorf("resource counts %+v", bk.Status.Resources)
	}
	waitFor(t, "events of the backup", func() bool {
		got := e.eventReasons("nightly")
		for _, want := range []string{"Started", "VolumeQueued", "VolumeCompleted", "Completed"} {
			if !slices.Contains(got, want) {
				return false
			}
		}
		return true
	})
}

// checkStoredBackup reads the backup's folder: the metadata document, the volume results and the resources.
func checkStoredBackup(t *testing.T, e *testEnv, name string, bk *v1.Backup, wantEntries, notEntries []string) {
	t.Helper()
	be := e.storage(bsl.BackupPath(name))
	raw, err := storage.ReadAll(e.ctx, be, BackupMetadataName)
	if err != nil {
		t.Fatal(err)
	}
	var md BackupMetadata
	if err := json.Unmarshal(raw, &md); err != nil {
		t.Fatal(err)
	}
	if md.FormatVersion != BackupMetadataFormat || md.Backup == nil || md.Backup.Name != name || md.Backup.Kind != "Backup" ||
		md.Backup.Status.Phase != bk.Status.Phase || len(md.SkippedVolumes) != len(bk.Status.SkippedVolumes) ||
		len(md.Warnings) != len(bk.Status.Warnings) || fmt.Sprint(md.Resources) != fmt.Sprint(bk.Status.Resources) {
		t.Errorf("backup.json %s", raw)
	}
	raw, err = storage.ReadAll(e.ctx, be, PodVolumeBackupsName)
	if err != nil {
		t.Fatal(err)
	}
	var list v1.PodVolumeBackupList
	if err := json.Unmarshal(raw, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != bk.Status.VolumesTotal {
		t.Errorf("podvolumebackups.json has %d items, want %d", len(list.Items), bk.Status.VolumesTotal)
	}
	for _, pvb := range list.Items {
		if !volumeTerminal(pvb.Status.Phase) {
			t.Errorf("stored PodVolumeBackup %s is %s", pvb.Name, pvb.Status.Phase)
		}
	}
	raw, err = storage.ReadAll(e.ctx, be, ResourcesArchiveName)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := resources.Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, en := range entries {
		names = append(names, en.Name)
	}
	for _, want := range wantEntries {
		if !slices.Contains(names, want) {
			t.Errorf("archive lacks %s; has %q", want, names)
		}
	}
	for _, not := range notEntries {
		if slices.Contains(names, not) {
			t.Errorf("archive has %s", not)
		}
	}
	for _, n := range names {
		if strings.HasPrefix(n, "events/") || strings.HasPrefix(n, "backups.straddle.io/") {
			t.Errorf("archive has noise %s", n)
		}
	}
}

func TestBackupDefaultAllAndZeroVolumes(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns := e.namespace("all")
	block := corev1.PersistentVolumeBlock
	e.create(&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "raw"}, Spec: corev1.PersistentVolumeClaimSpec{
		VolumeMode: &block, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: mustQuantity("1Gi")}}}})
	e.pod(newPod(ns, "p").emptyDir("a", "b", "c").pvc("blk", "raw").
		vol("hp", corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/tmp"}}).
		vol("cm", corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}).
		vol("proj", corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{}}}).
		vol("down", corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{}}).
		ann(AnnotationBackupVolumesExcludes, "b").ann(VeleroAnnotationBackupVolumesExcludes, "c"))

	// The install's default (off) applies: nothing is annotated in, so the backup has no volumes but still
	// stores the resources and completes.
	e.backup("none", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	bk := e.waitPhase("none", v1.PhaseCompleted)
	if bk.Status.VolumesTotal != 0 || len(e.pvbs("none")) != 0 || len(bk.Status.SkippedVolumes) != 0 {
		t.Errorf("zero-volume backup: %+v", bk.Status)
	}
	checkStoredBackup(t, e, "none", bk, []string{"pods/" + ns + "/p.json"}, nil)

	// The Backup's own setting overrides the install's default.
	e.backup("all", v1.BackupSpec{IncludedNamespaces: []string{ns}, DefaultVolumesToFsBackup: ptr.To(true)})
	pvbs := e.waitPVBs("all", 1)
	if pvbs[0].Spec.Volume != "a" {
		t.Errorf("took volume %s", pvbs[0].Spec.Volume)
	}
	bk = e.waitBackup("all", "skips recorded", func(b *v1.Backup) bool { return len(b.Status.SkippedVolumes) > 0 })
	reasons := map[string]string{}
	for _, s := range bk.Status.SkippedVolumes {
		reasons[s.Volume] = s.Reason
	}
	for vol, want := range map[string]string{"blk": "Block", "hp": "hostPath", "cm": "configMap", "proj": "projected", "down": "downwardAPI"} {
		if !strings.Contains(reasons[vol], want) {
			t.Errorf("skip of %s: %q, want it to say %s", vol, reasons[vol], want)
		}
	}
	if len(reasons) != 5 {
		t.Errorf("skipped %+v", bk.Status.SkippedVolumes)
	}
	e.setPVB(pvbs[0].Name, v1.VolumePhaseCompleted, v1.Progress{}, "s", "")
	e.waitPhase("all", v1.PhaseCompleted)

	// And the install's default, when on, applies to Backups that do not say.
	e.rec.DefaultVolumesToFsBackup = true
	e.backup("install-default", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	e.waitPVBs("install-default", 1)
}

func TestBackupPartiallyFailedAndFailed(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns := e.namespace("f")
	e.pod(newPod(ns, "p").emptyDir("a", "b").ann(AnnotationBackupVolumes, "a,b"))

	e.backup("partly", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	pvbs := e.waitPVBs("partly", 2)
	e.setPVB(pvbs[0].Name, v1.VolumePhaseCompleted, v1.Progress{}, "s", "")
	e.setPVB(pvbs[1].Name, v1.VolumePhaseFailed, v1.Progress{}, "", "volume directory not found")
	bk := e.waitPhase("partly", v1.PhasePartiallyFailed)
	if bk.Status.VolumesCompleted != 1 || bk.Status.VolumesFailed != 1 {
		t.Errorf("status %+v", bk.Status)
	}
	if objs := e.objects(bsl.BackupPath("partly")); len(objs) != 3 {
		t.Errorf("stored %v", objs)
	}
	waitFor(t, "VolumeFailed event", func() bool { return slices.Contains(e.eventReasons("partly"), "VolumeFailed") })

	e.backup("failed", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	pvbs = e.waitPVBs("failed", 2)
	e.setPVB(pvbs[0].Name, v1.VolumePhaseFailed, v1.Progress{}, "", "permission denied")
	e.setPVB(pvbs[1].Name, v1.VolumePhaseCanceled, v1.Progress{}, "", "")
	bk = e.waitPhase("failed", v1.PhaseFailed)
	if bk.Status.VolumesFailed != 2 || bk.Status.CompletionTimestamp == nil {
		t.Errorf("status %+v", bk.Status)
	}
}

func TestBackupFailsWithoutUsableLocation(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns := e.namespace("l")
	e.backup("nowhere", v1.BackupSpec{IncludedNamespaces: []string{ns}, StorageLocation: "missing"})
	bk := e.waitPhase("nowhere", v1.PhaseFailed)
	if len(bk.Status.Errors) != 1 || !strings.Contains(bk.Status.Errors[0], "storage location missing does not exist") {
		t.Errorf("errors %q", bk.Status.Errors)
	}

	e.loc.Status = v1.BackupStorageLocationStatus{Phase: v1.LocationUnavailable, Message: "bucket does not exist"}
	if err := e.cl.Status().Update(e.ctx, e.loc); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cache sees the location unavailable", func() bool {
		var loc v1.BackupStorageLocation
		return e.rec.Client.Get(e.ctx, client.ObjectKeyFromObject(e.loc), &loc) == nil && loc.Status.Phase == v1.LocationUnavailable
	})
	e.backup("broken", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	bk = e.waitPhase("broken", v1.PhaseFailed)
	if len(bk.Status.Errors) != 1 || !strings.Contains(bk.Status.Errors[0], "unavailable: bucket does not exist") {
		t.Errorf("errors %q", bk.Status.Errors)
	}
}

func TestBackupCapsVolumesInFlight(t *testing.T) {
	e := newEnv(t, func(r *BackupReconciler) { r.MaxVolumesInFlight = 2 }, nil)
	ns := e.namespace("cap")
	e.pod(newPod(ns, "p").emptyDir("v1", "v2", "v3", "v4", "v5").ann(AnnotationBackupVolumes, "v1,v2,v3,v4,v5"))
	e.backup("capped", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	done := map[string]bool{}
	for round := 0; len(done) < 5; round++ {
		var pvbs []v1.PodVolumeBackup
		waitFor(t, "PodVolumeBackups under the cap", func() bool {
			pvbs = e.pvbs("capped")
			open := 0
			for _, p := range pvbs {
				if !done[p.Name] {
					open++
				}
			}
			return open == min(2, 5-len(done))
		})
		// The cap holds for a while, not just at one instant.
		time.Sleep(600 * time.Millisecond)
		if got := len(e.pvbs("capped")); got != len(pvbs) {
			t.Fatalf("round %d: %d PodVolumeBackups with %d done, cap 2", round, got, len(done))
		}
		bk := e.get("capped")
		if bk.Status.VolumesTotal != 5 || bk.Status.Phase != v1.PhaseInProgress {
			t.Fatalf("round %d: total %d phase %s", round, bk.Status.VolumesTotal, bk.Status.Phase)
		}
		for _, p := range pvbs {
			if !done[p.Name] {
				e.setPVB(p.Name, v1.VolumePhaseCompleted, v1.Progress{}, "s", "")
				done[p.Name] = true
			}
		}
	}
	bk := e.waitPhase("capped", v1.PhaseCompleted)
	if bk.Status.VolumesCompleted != 5 {
		t.Errorf("completed %d", bk.Status.VolumesCompleted)
	}
}

// completeWithSnapshot plays the node-agent fully: it backs up a directory with the PodVolumeBackup's tags
// into its namespace's repository and records the snapshot.
func (e *testEnv) completeWithSnapshot(pvb v1.PodVolumeBackup) string {
	e.t.Helper()
	id := e.snapshot(pvb.Spec.Pod.Namespace, pvb.Spec.Tags)
	e.setPVB(pvb.Name, v1.VolumePhaseCompleted, v1.Progress{}, id, "")
	return id
}

func snapshotIDs(t *testing.T, e *testEnv, namespace string) []string {
	t.Helper()
	snaps, err := e.repository(namespace).ListSnapshots(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range snaps {
		ids = append(ids, s.ID.String())
	}
	return ids
}

func TestBackupDeletionRemovesSnapshotsAndObjects(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns1, ns2 := e.namespace("d1"), e.namespace("d2")
	e.pod(newPod(ns1, "p").emptyDir("a").ann(AnnotationBackupVolumes, "a"))
	e.pod(newPod(ns2, "q").emptyDir("b").ann(AnnotationBackupVolumes, "b"))
	for _, name := range []string{"keep", "drop"} {
		e.backup(name, v1.BackupSpec{IncludedNamespaces: []string{ns1, ns2}})
		for _, pvb := range e.waitPVBs(name, 2) {
			e.completeWithSnapshot(pvb)
		}
		e.waitPhase(name, v1.PhaseCompleted)
	}
	keep1, keep2 := snapshotIDs(t, e, ns1), snapshotIDs(t, e, ns2)
	if len(keep1) != 2 || len(keep2) != 2 {
		t.Fatalf("snapshots before deletion: %v %v", keep1, keep2)
	}
	// The second backup took the first one's snapshots as parents.
	for _, pvb := range e.pvbs("drop") {
		if pvb.Spec.ParentSnapshotID == "" {
			t.Errorf("PodVolumeBackup %s has no parent", pvb.Name)
		}
	}
	bk := e.get("drop")
	if !slices.Contains(bk.Finalizers, BackupFinalizer) {
		t.Fatalf("finalizers %v", bk.Finalizers)
	}
	if err := e.cl.Delete(e.ctx, bk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backup drop gone", func() bool {
		return apierrors.IsNotFound(e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "drop"}, &v1.Backup{}))
	})
	if got := snapshotIDs(t, e, ns1); !slices.Equal(got, keep1[:1]) {
		t.Errorf("snapshots of %s after deletion %v, want %v", ns1, got, keep1[:1])
	}
	if got := snapshotIDs(t, e, ns2); !slices.Equal(got, keep2[:1]) {
		t.Errorf("snapshots of %s after deletion %v, want %v", ns2, got, keep2[:1])
	}
	if got := e.objects(bsl.BackupPath("drop")); len(got) != 0 {
		t.Errorf("backups/drop still holds %v", got)
	}
	if got := e.objects(bsl.BackupPath("keep")); len(got) != 3 {
		t.Errorf("backups/keep holds %v", got)
	}
	if locks, err := lock.List(e.ctx, e.repository(ns1)); err != nil || len(locks) != 0 {
		t.Errorf("locks left: %v %v", locks, err)
	}
}

func TestBackupExpires(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns := e.namespace("ttl")
	e.backup("short", v1.BackupSpec{IncludedNamespaces: []string{ns}, TTL: &metav1.Duration{Duration: 3 * time.Second}})
	bk := e.waitPhase("short", v1.PhaseCompleted)
	if got := bk.Status.Expiration.Sub(bk.Status.StartTimestamp.Time); got != 3*time.Second {
		t.Errorf("expiration %v after start", got)
	}
	if got := e.objects(bsl.BackupPath("short")); len(got) != 3 {
		t.Fatalf("stored %v", got)
	}
	waitFor(t, "expired backup deleted", func() bool {
		return apierrors.IsNotFound(e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "short"}, &v1.Backup{}))
	})
	if got := e.objects(bsl.BackupPath("short")); len(got) != 0 {
		t.Errorf("backups/short still holds %v", got)
	}
}

func TestBackupToMinIO(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	e := newEnv(t, nil, func(ns string) *v1.BackupStorageLocation {
		cred := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "straddle-storage-credentials"}, Data: map[string][]byte{
			"cloud": fmt.Appendf(nil, "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)}}
		cl, err := client.New(restConfig, client.Options{Scheme: scheme})
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Create(context.Background(), cred); err != nil {
			t.Fatal(err)
		}
		endpoint := "http://" + srv.Endpoint
		return &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "minio"}, Spec: v1.BackupStorageLocationSpec{
			Provider: "s3", Default: true,
			S3: &v1.S3Location{Endpoint: endpoint, Bucket: bucket, Prefix: "cluster", ForcePathStyle: true,
				CredentialsSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: cred.Name}, Key: "cloud"}},
			RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "straddle-repository-password"}, Key: "password"},
		}}
	})
	ns := e.namespace("s3")
	e.pod(newPod(ns, "p").emptyDir("a").ann(AnnotationBackupVolumes, "a"))
	e.backup("to-minio", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	pvbs := e.waitPVBs("to-minio", 1)
	if pvbs[0].Spec.StorageLocation != "minio" {
		t.Errorf("storage location %s", pvbs[0].Spec.StorageLocation)
	}
	id := e.completeWithSnapshot(pvbs[0])
	bk := e.waitPhase("to-minio", v1.PhaseCompleted)
	checkStoredBackup(t, e, "to-minio", bk, []string{"pods/" + ns + "/p.json"}, nil)
	if got := snapshotIDs(t, e, ns); !slices.Equal(got, []string{id}) {
		t.Errorf("snapshots %v", got)
	}
	if err := e.cl.Delete(e.ctx, bk); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backup gone", func() bool {
		return apierrors.IsNotFound(e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "to-minio"}, &v1.Backup{}))
	})
	if got := snapshotIDs(t, e, ns); len(got) != 0 {
		t.Errorf("snapshots after deletion %v", got)
	}
	if got := e.objects(bsl.BackupPath("to-minio")); len(got) != 0 {
		t.Errorf("objects after deletion %v", got)
	}
}

func TestBackupSurvivesControllerRestart(t *testing.T) {
	e := newEnv(t, func(r *BackupReconciler) { r.MaxVolumesInFlight = 1 }, nil)
	ns := e.namespace("restart")
	e.pod(newPod(ns, "p").emptyDir("a", "b", "c").ann(AnnotationBackupVolumes, "a,b,c"))
	e.backup("restarted", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	first := e.waitPVBs("restarted", 1)
	e.waitBackup("restarted", "total known", func(b *v1.Backup) bool { return b.Status.VolumesTotal == 3 })

	// The controller goes away with two volumes planned but not created; the next one picks them up from
	// the pods again.
	e.stop()
	e.setPVB(first[0].Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 1}, "s", "")
	e.stop = e.startController(func(r *BackupReconciler) { r.MaxVolumesInFlight = 1 })
	done := map[string]bool{first[0].Name: true}
	for len(done) < 3 {
		var next *v1.PodVolumeBackup
		waitFor(t, "the next PodVolumeBackup", func() bool {
			for _, p := range e.pvbs("restarted") {
				if !done[p.Name] {
					next = &p
					return true
				}
			}
			return false
		})
		e.setPVB(next.Name, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 1}, "s", "")
		done[next.Name] = true
	}
	bk := e.waitPhase("restarted", v1.PhaseCompleted)
	if bk.Status.VolumesCompleted != 3 || bk.Status.Progress.BytesDone != 3 {
		t.Errorf("status %+v", bk.Status)
	}
}

func TestBackupFailsWhenTheRepositoryWillNotOpen(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns := e.namespace("pw")
	// A repository sealed with another password is already where this namespace's belongs.
	be := e.storage(bsl.RepositoryPath(ns))
	if _, err := repo.Init(e.ctx, be, []byte("another password"), repo.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	e.pod(newPod(ns, "p").emptyDir("a").ann(AnnotationBackupVolumes, "a"))
	e.backup("sealed", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	bk := e.waitPhase("sealed", v1.PhaseFailed)
	if len(bk.Status.Errors) != 1 || !strings.Contains(bk.Status.Errors[0], "does not open the repository") || !strings.Contains(bk.Status.Errors[0], ns) {
		t.Errorf("errors %q", bk.Status.Errors)
	}
	if n := len(e.pvbs("sealed")); n != 0 {
		t.Errorf("%d PodVolumeBackups created for a repository that does not open", n)
	}
	var br v1.BackupRepository
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "default-" + ns}, &br); err != nil {
		t.Fatal(err)
	}
	if br.Status.Phase != "NotReady" || !strings.Contains(br.Status.Message, "does not open the repository") {
		t.Errorf("BackupRepository status %+v", br.Status)
	}
}

func TestBackupDeletionWaitsForRunningVolumes(t *testing.T) {
	e := newEnv(t, nil, nil)
	ns := e.namespace("dw")
	e.pod(newPod(ns, "p").emptyDir("a").ann(AnnotationBackupVolumes, "a"))
	e.backup("running", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	pvb := e.waitPVBs("running", 1)[0]
	e.setPVB(pvb.Name, v1.VolumePhaseInProgress, v1.Progress{BytesDone: 1}, "", "")
	if err := e.cl.Delete(e.ctx, e.get("running")); err != nil {
		t.Fatal(err)
	}
	e.waitPhase("running", v1.PhaseDeleting)
	time.Sleep(time.Second)
	if bk := e.get("running"); !slices.Contains(bk.Finalizers, BackupFinalizer) {
		t.Fatal("the backup went while its volume was still being backed up")
	}
	// The node-agent saves its snapshot and ends; only then are the backup's snapshots forgotten.
	e.completeWithSnapshot(pvb)
	waitFor(t, "backup running gone", func() bool {
		return apierrors.IsNotFound(e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "running"}, &v1.Backup{}))
	})
	if got := snapshotIDs(t, e, ns); len(got) != 0 {
		t.Errorf("snapshots left %v", got)
	}
}
