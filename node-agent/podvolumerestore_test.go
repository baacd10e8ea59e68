package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/repotest"
)

const testRestoreUID = "restore-uid-1"

// newPVR builds a PodVolumeRestore of node-a, owned by Restore "r1", in phase, changed by opts.
func newPVR(phase v1.VolumePhase, opts ...func(*v1.PodVolumeRestore)) *v1.PodVolumeRestore {
	p := &v1.PodVolumeRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "pvr", Namespace: "straddle", UID: types.UID("uid-pvr"),
			Labels: map[string]string{v1.NodeLabel: "node-a"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Restore", Name: "r1",
				UID: testRestoreUID, Controller: ptr.To(true)}}},
		Spec: v1.PodVolumeRestoreSpec{Node: "node-a", Pod: v1.PodReference{Namespace: "app", Name: "web-0", UID: "pod-uid"},
			Volume: "data", StorageLocation: "default", SnapshotID: strings.Repeat("ab", 32), SourceNamespace: "app"},
		Status: v1.PodVolumeRestoreStatus{Phase: phase},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func restoredPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-0", UID: "pod-uid"},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
}

type restoreFixture struct {
	r     *PodVolumeRestoreReconciler
	cl    client.Client
	clock *clocktesting.FakeClock
	w     *writes
	ran   int
}

func newRestoreFixture(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) *restoreFixture {
	t.Helper()
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1.AddToScheme(scheme)
	f := &restoreFixture{w: &writes{}, clock: clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))}
	if funcs.SubResourceUpdate == nil {
		funcs.SubResourceUpdate = func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			f.w.statusUpdates.Add(1)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		}
	}
	funcs.Update = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		f.w.updates.Add(1)
		return c.Update(ctx, obj, opts...)
	}
	f.cl = fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&v1.PodVolumeRestore{}).WithInterceptorFuncs(funcs).Build()
	f.r = &PodVolumeRestoreReconciler{Client: f.cl, APIReader: f.cl, Clock: f.clock, NodeName: "node-a", Namespace: "straddle",
		HostPodsDir: t.TempDir(), ProgressInterval: 10 * time.Millisecond, FolderWait: time.Minute, FolderPoll: time.Second,
		beforeRestore: func(context.Context, *v1.PodVolumeRestore) { f.ran++ }}
	f.r.setDefaults()
	return f
}

func (f *restoreFixture) reconcile(t *testing.T) ctrl.Result {
	t.Helper()
	res, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "straddle", Name: "pvr"}})
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return res
}

func (f *restoreFixture) get(t *testing.T) *v1.PodVolumeRestore {
	t.Helper()
	var got v1.PodVolumeRestore
	if err := f.cl.Get(context.Background(), client.ObjectKey{Namespace: "straddle", Name: "pvr"}, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func TestRestoreLeftAlone(t *testing.T) {
	for name, pvr := range map[string]*v1.PodVolumeRestore{
		"another node's, though labelled ours": newPVR("", func(p *v1.PodVolumeRestore) { p.Spec.Node = "node-b" }),
		"completed":                            newPVR(v1.VolumePhaseCompleted),
		"failed":                               newPVR(v1.VolumePhaseFailed),
		"being deleted": newPVR("", func(p *v1.PodVolumeRestore) {
			p.Finalizers = []string{"test/hold"}
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			f := newRestoreFixture(t, interceptor.Funcs{}, pvr, restoredPod())
			if res := f.reconcile(t); res.RequeueAfter != 0 {
				t.Errorf("result %+v", res)
			}
			if n := f.w.updates.Load() + f.w.statusUpdates.Load(); n != 0 || f.ran != 0 {
				t.Errorf("%d writes, %d restores run", n, f.ran)
			}
		})
	}
}

// A conflict when taking a new PodVolumeRestore means someone else moved it: look again, do not run it.
func TestRestoreTakeConflictRequeuesWithoutRunning(t *testing.T) {
	f := newRestoreFixture(t, interceptor.Funcs{
		SubResourceUpdate: func(context.Context, client.Client, string, client.Object, ...client.SubResourceUpdateOption) error {
			return apierrors.NewConflict(v1.GroupVersion.WithResource("podvolumerestores").GroupResource(), "pvr", nil)
		},
	}, newPVR(v1.VolumePhaseNew), restoredPod())
	if res := f.reconcile(t); res.RequeueAfter <= 0 {
		t.Errorf("result %+v, want a requeue", res)
	}
	if f.ran != 0 || f.r.stateOf("uid-pvr") != 0 {
		t.Error("the restore went on after a conflict")
	}
	if got := f.get(t); got.Status.Phase != v1.VolumePhaseNew {
		t.Errorf("phase %q", got.Status.Phase)
	}
}

// Taken at once, then looked at again while the kubelet has not made the folder, then failed after the bound.
func TestRestoreWaitsForTheFolderThenFails(t *testing.T) {
	f := newRestoreFixture(t, interceptor.Funcs{}, newPVR(""), restoredPod())
	if res := f.reconcile(t); res.RequeueAfter != time.Second {
		t.Errorf("result %+v, want a look again after FolderPoll", res)
	}
	got := f.get(t)
	if got.Status.Phase != v1.VolumePhaseInProgress || got.Status.StartTimestamp == nil || !strings.Contains(got.Status.Message, "waiting for the volume folder") {
		t.Errorf("status while waiting %+v", got.Status)
	}
	f.clock.Step(59 * time.Second)
	if res := f.reconcile(t); res.RequeueAfter != time.Second || f.ran != 0 {
		t.Errorf("result %+v, ran %d before the bound", res, f.ran)
	}
	f.clock.Step(time.Second)
	if res := f.reconcile(t); res.RequeueAfter != 0 {
		t.Errorf("result %+v after the bound", res)
	}
	got = f.get(t)
	if got.Status.Phase != v1.VolumePhaseFailed || !strings.Contains(got.Status.Message, "the volume folder never appeared on node node-a within 1m0s") ||
		!strings.Contains(got.Status.Message, `volume "data" of pod app/web-0 not found`) || got.Status.CompletionTimestamp == nil {
		t.Errorf("status after the bound %+v", got.Status)
	}
	if f.ran != 0 {
		t.Error("a restore ran without its folder")
	}
}

// An unbound claim is waited for like a missing folder: the pod cannot start before it is bound.
func TestRestoreWaitsForAnUnboundClaim(t *testing.T) {
	pod := restoredPod()
	pod.Spec.Volumes[0].VolumeSource = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web-0"}}
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "data-web-0"}}
	f := newRestoreFixture(t, interceptor.Funcs{}, newPVR(""), pod, claim)
	if res := f.reconcile(t); res.RequeueAfter != time.Second {
		t.Errorf("result %+v", res)
	}
	if got := f.get(t); !strings.Contains(got.Status.Message, "PersistentVolumeClaim app/data-web-0 is not bound") {
		t.Errorf("status %+v", got.Status)
	}
	// Once bound, the folder is looked for under the PersistentVolume's name.
	claim.Spec.VolumeName = "pvc-123"
	if err := f.cl.Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.r.HostPodsDir, "pod-uid", "volumes", "kubernetes.io~csi", "pvc-123", "mount"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.reconcile(t)
	if f.ran != 1 {
		t.Errorf("ran %d times once the folder is there", f.ran)
	}
}

func TestRestoreFailsWhenThePodIsGoneOrReplaced(t *testing.T) {
	replaced := restoredPod()
	replaced.UID = "another-uid"
	for name, objs := range map[string][]client.Object{
		"gone":     {newPVR("")},
		"replaced": {newPVR(""), replaced},
	} {
		t.Run(name, func(t *testing.T) {
			f := newRestoreFixture(t, interceptor.Funcs{}, objs...)
			f.reconcile(t)
			if got := f.get(t); got.Status.Phase != v1.VolumePhaseFailed || !strings.Contains(got.Status.Message, "pod app/web-0") {
				t.Errorf("status %+v", got.Status)
			}
		})
	}
}

func TestRestoreResumeCountsAttempts(t *testing.T) {
	attempts := func(n string) func(*v1.PodVolumeRestore) {
		return func(p *v1.PodVolumeRestore) { p.Annotations = map[string]string{AttemptsAnnotation: n} }
	}
	for _, c := range []struct {
		name         string
		pvr          *v1.PodVolumeRestore
		wantAttempts string
		wantPhase    v1.VolumePhase
		wantMessage  string
	}{
		{"first restart takes it again", newPVR(v1.VolumePhaseInProgress), "2", v1.VolumePhaseInProgress, "waiting for the volume folder"},
		{"unreadable count is a first attempt", newPVR(v1.VolumePhaseInProgress, attempts("x")), "2", v1.VolumePhaseInProgress, "waiting"},
		{"below the limit", newPVR(v1.VolumePhaseInProgress, attempts("2")), "3", v1.VolumePhaseInProgress, "waiting"},
		{"at the limit it fails", newPVR(v1.VolumePhaseInProgress, attempts("3")), "3", v1.VolumePhaseFailed, "node-agent restarted during the restore 3 times"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.pvr.Status.StartTimestamp = &metav1.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			f := newRestoreFixture(t, interceptor.Funcs{}, c.pvr, restoredPod())
			f.reconcile(t)
			got := f.get(t)
			if got.Annotations[AttemptsAnnotation] != c.wantAttempts {
				t.Errorf("attempts %q, want %q", got.Annotations[AttemptsAnnotation], c.wantAttempts)
			}
			if got.Status.Phase != c.wantPhase || !strings.Contains(got.Status.Message, c.wantMessage) {
				t.Errorf("status %+v, want %s saying %q", got.Status, c.wantPhase, c.wantMessage)
			}
			// Looked at again by the same process (the folder still missing): its own, not counted again.
			f.reconcile(t)
			if again := f.get(t); again.Annotations[AttemptsAnnotation] != c.wantAttempts {
				t.Errorf("attempts %q after a second look", again.Annotations[AttemptsAnnotation])
			}
		})
	}
}

func TestRestoreUIDOf(t *testing.T) {
	owner := func(kind, uid string, controller bool) func(*v1.PodVolumeRestore) {
		return func(p *v1.PodVolumeRestore) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: kind, Name: "x", UID: types.UID(uid), Controller: ptr.To(controller)}}
		}
	}
	for _, c := range []struct {
		name, want, wantErr string
		pvr                 *v1.PodVolumeRestore
	}{
		{name: "the controlling Restore", pvr: newPVR(""), want: testRestoreUID},
		{name: "no owner", pvr: newPVR("", func(p *v1.PodVolumeRestore) { p.OwnerReferences = nil }), wantErr: "no controller ownerReference to a Restore"},
		{name: "not the controller", pvr: newPVR("", owner("Restore", "u", false)), wantErr: "no controller ownerReference"},
		{name: "another kind", pvr: newPVR("", owner("Backup", "u", true)), wantErr: "no controller ownerReference"},
		{name: "a UID that is a path", pvr: newPVR("", owner("Restore", "../x", true)), wantErr: "cannot name a marker file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := restoreUIDOf(c.pvr)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Errorf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Errorf("got %q, %v", got, err)
			}
		})
	}
}

func TestWriteMarker(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	outside := t.TempDir()
	vol := t.TempDir()
	// A .straddle planted as a symlink out of the volume is replaced, not followed.
	if err := os.Symlink(outside, filepath.Join(vol, MarkerDir)); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(vol, "uid-1"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the marker was written outside the volume: %v", entries)
	}
	fi, err := os.Lstat(filepath.Join(vol, MarkerDir))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
		t.Fatalf("%s: %v, %v (want a directory of mode 0777 despite the umask)", MarkerDir, fi.Mode(), err)
	}
	fi, err = os.Lstat(filepath.Join(vol, MarkerDir, "uid-1"))
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("marker: %v, %v", fi.Mode(), err)
	}
	// Written again (a retried restore), into an existing folder whose mode a snapshot set otherwise.
	if err := os.Chmod(filepath.Join(vol, MarkerDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := writeMarker(vol, "uid-1"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(vol, MarkerDir)); fi.Mode().Perm() != 0o777 {
		t.Errorf("mode %v after a second write", fi.Mode())
	}
}

func TestExplainWriteError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("restore a: %w", syscall.ENOSPC), "is full (make its claim bigger"},
		{fmt.Errorf("restore a: %w", syscall.EACCES), "permission denied writing the volume"},
		{fmt.Errorf("restore a: %w", syscall.EROFS), "is read-only"},
		{errors.New("other"), "other"},
	} {
		got := explainWriteError(c.err, "/v").Error()
		if !strings.Contains(got, c.want) {
			t.Errorf("%v explained as %q, want %q", c.err, got, c.want)
		}
	}
}

// The restore writes the snapshot into the volume folder, never out of it: a folder in the volume that is a
// symlink out of it is replaced by the snapshot's directory, and the marker comes last.
func TestRestoreStaysInsideTheVolume(t *testing.T) {
	ctx := context.Background()
	locDir := t.TempDir()
	loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "straddle"}, Spec: v1.BackupStorageLocationSpec{
		Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: locDir},
		RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "pw"}, Key: "password"}}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pw", Namespace: "straddle"}, Data: map[string][]byte{"password": []byte("pw")}}
	f := newRestoreFixture(t, interceptor.Funcs{}, newPVR(""), restoredPod(), loc, secret)
	rp, err := bsl.OpenRepository(ctx, f.cl, loc, "app", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "file"), []byte("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := backup.Run(ctx, rp, backup.Options{Path: src})
	if err != nil {
		t.Fatal(err)
	}

	outside := t.TempDir()
	vol := filepath.Join(f.r.HostPodsDir, "pod-uid", "volumes", "kubernetes.io~empty-dir", "data")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(vol, "sub")); err != nil {
		t.Fatal(err)
	}
	pvr := newPVR("", func(p *v1.PodVolumeRestore) { p.Spec.SnapshotID = out.Snapshot.ID.String() })
	var last v1.Progress
	res, err := f.r.restore(ctx, pvr, vol, func(p v1.Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("the restore wrote outside the volume: %v", entries)
	}
	for _, d := range repotest.DiffSnapshots(withoutRoot(repotest.Snapshot(t, src)), withoutMarker(repotest.Snapshot(t, vol))) {
		t.Error(d)
	}
	if _, err := os.Stat(filepath.Join(vol, MarkerDir, testRestoreUID)); err != nil {
		t.Errorf("no marker: %v", err)
	}
	if res.Progress.FilesDone != 1 || res.Progress.BytesDone != 4 || last.BytesDone != 4 || last.BytesTotal != 4 {
		t.Errorf("result %+v, last progress %+v", res, last)
	}
}

func withoutRoot(m map[string]repotest.Entry) map[string]repotest.Entry {
	delete(m, ".")
	return m
}

func withoutMarker(m map[string]repotest.Entry) map[string]repotest.Entry {
	for rel := range m {
		if rel == MarkerDir || strings.HasPrefix(rel, MarkerDir+"/") {
			delete(m, rel)
		}
	}
	return withoutRoot(m)
}

func TestMetricsCountRestores(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.restoreStarted()(nil, errors.New("snapshot not found"))
	m.restoreStarted()(nil, errDeleted)
	m.restoreStarted()(&restoreResult{Progress: v1.Progress{BytesDone: 100, FilesDone: 3}}, nil)
	running := m.restoreStarted()
	got := gather(t, reg)
	running(&restoreResult{}, nil)
	for name, want := range map[string]float64{
		"straddle_node_agent_volume_restores_total/failed":    1,
		"straddle_node_agent_volume_restores_total/canceled":  1,
		"straddle_node_agent_volume_restores_total/completed": 1,
		"straddle_node_agent_volume_restores_running":         1,
		"straddle_node_agent_restore_bytes_total":             100,
		"straddle_node_agent_restore_files_total":             3,
		"straddle_node_agent_volume_restore_duration_seconds": 3,
		"straddle_node_agent_volume_backups_total/completed":  0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

// gather reads reg's metrics as name[/label values] → value (a histogram's sample count).
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			name := f.GetName()
			for _, l := range mt.GetLabel() {
				name += "/" + l.GetValue()
			}
			switch {
			case mt.GetCounter() != nil:
				got[name] = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				got[name] = mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				got[name] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return got
}
