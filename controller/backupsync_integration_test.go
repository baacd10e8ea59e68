//go:build integration

package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	nodeagent "github.com/straddle-io/straddle/node-agent"
)

// available marks the env's location Available, as the location checker would.
func (e *testEnv) available() {
	e.t.Helper()
	loc := &v1.BackupStorageLocation{}
	if err := e.cl.Get(e.ctx, client.ObjectKeyFromObject(e.loc), loc); err != nil {
		e.t.Fatal(err)
	}
	loc.Status.Phase = v1.LocationAvailable
	if err := e.cl.Status().Update(e.ctx, loc); err != nil {
		e.t.Fatal(err)
	}
	e.loc = loc
}

// syncer is a backup sync for the env's install namespace, not started.
func (e *testEnv) syncer(period, grace time.Duration) *BackupSyncer {
	return &BackupSyncer{Client: e.cl, APIReader: e.cl, Clock: clock.RealClock{}, Events: e.rec.Events, Namespace: e.ns,
		Period: period, Grace: grace}
}

func (e *testEnv) gone(name string) bool {
	return apierrors.IsNotFound(e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &v1.Backup{}))
}

// Two clusters share one storage location: cluster 1 (an install namespace with its own controller) backs up
// for real; cluster 2's sync creates the Backup with its PodVolumeBackups and status within its period, a
// restore in cluster 2 takes it, and deleting it in cluster 1 makes it disappear in cluster 2.
func TestBackupSyncFromAnotherCluster(t *testing.T) {
	e1 := newEnv(t, nil, nil)
	s := backupSeed(t, e1)
	orig := e1.get(s.backup)
	e2 := newEnv(t, nil, func(ns string) *v1.BackupStorageLocation {
		loc := e1.loc.DeepCopy()
		loc.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "shared"}
		return loc
	})
	e2.available()

	const period = 500 * time.Millisecond
	ctx, cancel := context.WithCancel(e2.ctx)
	done := make(chan error, 1)
	go func() { done <- e2.syncer(period, 0).Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sync: %v", err)
		}
	})

	start := time.Now()
	waitFor(t, "the synced backup with its status", func() bool {
		var b v1.Backup
		return e2.cl.Get(e2.ctx, client.ObjectKey{Namespace: e2.ns, Name: s.backup}, &b) == nil && b.Status.Phase != ""
	})
	if took := time.Since(start); took > period+2*time.Second {
		t.Errorf("the backup appeared after %s, more than one sync period (%s) and a margin", took, period)
	}
	b := e2.get(s.backup)
	if b.Annotations[v1.SyncedFromAnnotation] != "shared" || b.Spec.StorageLocation != "shared" || !slices.Contains(b.Finalizers, BackupFinalizer) ||
		!slices.Equal(b.Spec.IncludedNamespaces, []string{s.ns}) {
		t.Errorf("synced backup %+v %+v", b.ObjectMeta, b.Spec)
	}
	if st, want := b.Status, orig.Status; st.Phase != v1.PhaseCompleted || st.VolumesTotal != 1 || st.VolumesCompleted != 1 ||
		!st.CompletionTimestamp.Equal(want.CompletionTimestamp) || !st.Expiration.Equal(want.Expiration) || !st.StartTimestamp.Equal(want.StartTimestamp) ||
		len(st.Resources) == 0 || !slices.Equal(st.Resources, want.Resources) {
		t.Errorf("synced status %+v, want %+v", st, want)
	}
	pvbs := e2.pvbs(s.backup)
	if len(pvbs) != 1 {
		t.Fatalf("synced PodVolumeBackups %v", pvbs)
	}
	pvb := pvbs[0]
	if _, ok := pvb.Labels[v1.NodeLabel]; ok || !metav1.IsControlledBy(&pvb, b) || pvb.Annotations[v1.SyncedFromAnnotation] != "shared" ||
		pvb.Status.Phase != v1.VolumePhaseCompleted || pvb.Status.SnapshotID != s.snapshot || pvb.Spec.StorageLocation != "shared" {
		t.Errorf("synced PodVolumeBackup %+v %+v %+v", pvb.ObjectMeta, pvb.Spec, pvb.Status)
	}
	if reasons := e2.eventReasons(s.backup); !slices.Contains(reasons, "Synced") || slices.Contains(reasons, "Started") {
		t.Errorf("events of the synced backup %v", reasons)
	}

	// The restore path takes the synced Backup: its phase and its (this cluster's) location.
	re := startRestores(t, e2.ctx, restConfig, e2.ns, nil)
	target := randomName("copy")
	re.restore("from-synced", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: target}})
	if rs := re.waitResources("from-synced"); rs.Status.VolumesTotal != 1 || len(rs.Status.Errors) != 0 {
		t.Fatalf("restore status %+v", rs.Status)
	}
	re.bind(target, "db-0", "node-z")
	var pvrs []v1.PodVolumeRestore
	waitFor(t, "PodVolumeRestore", func() bool { pvrs = re.pvrs("from-synced"); return len(pvrs) == 1 })
	if sp := pvrs[0].Spec; sp.StorageLocation != "shared" || sp.SnapshotID != s.snapshot {
		t.Errorf("PodVolumeRestore spec %+v", sp)
	}

	// Deleted in cluster 1 (its data removed from storage): gone from cluster 2 too, finalizer and all.
	if err := e1.cl.Delete(e1.ctx, orig); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the backup gone in cluster 1", func() bool { return e1.gone(s.backup) })
	start = time.Now()
	waitFor(t, "the synced backup gone in cluster 2", func() bool { return e2.gone(s.backup) })
	if took := time.Since(start); took > 2*period+3*time.Second {
		t.Errorf("the synced backup went %s after its folder, more than two sync periods (%s) and a margin", took, period)
	}
	if reasons := e2.eventReasons(s.backup); !slices.Contains(reasons, "RemovedFromStorage") {
		t.Errorf("events of the removed backup %v", reasons)
	}
	if got := e2.objects(bsl.BackupPath(s.backup)); len(got) != 0 {
		t.Errorf("backups/%s still holds %v", s.backup, got)
	}
}

// Only what is gone from storage is removed, and only when the listing worked: never a New or InProgress
// Backup, a Failed one (it may never have written its folder), one of another location, or one completed
// within the grace period (a listing may lag behind it).
func TestBackupSyncRemovesOnlyWhatIsGone(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.stop() // the phases below are the test's, not a Backup reconciler's
	e.available()
	now := metav1.Now()
	old := metav1.NewTime(now.Add(-2 * time.Hour))
	mk := func(name, location string, phase v1.Phase, completed *metav1.Time, synced bool) {
		b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}, Spec: v1.BackupSpec{StorageLocation: location}}
		if synced {
			b.Annotations = map[string]string{v1.SyncedFromAnnotation: location}
		}
		e.create(b)
		if phase == "" {
			return
		}
		b.Status = v1.BackupStatus{Phase: phase, CompletionTimestamp: completed}
		if err := e.cl.Status().Update(e.ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	mk("new", "default", "", nil, false)
	mk("running", "default", v1.PhaseInProgress, nil, false)
	mk("just-done", "default", v1.PhaseCompleted, &now, false)
	mk("failed", "default", v1.PhaseFailed, &old, false)
	mk("elsewhere", "other", v1.PhaseCompleted, &old, false)
	mk("stored", "default", v1.PhaseCompleted, &old, false)
	storeBackup(t, e.storage(bsl.BackupsDir), "stored", nil)
	mk("old-done", "default", v1.PhaseCompleted, &old, false)
	mk("old-partial", "default", v1.PhasePartiallyFailed, &old, false)
	mk("synced-gone", "default", v1.PhaseCompleted, &now, true)
	s := e.syncer(time.Minute, time.Hour)

	// A location that cannot be listed (its directory is gone) removes nothing.
	broken := e.loc.DeepCopy()
	dir := broken.Spec.Filesystem.Path
	broken.Spec.Filesystem.Path = dir + "-missing"
	if err := e.cl.Update(e.ctx, broken); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncOnce(e.ctx); err == nil {
		t.Error("a sync of a location that cannot be listed reported no error")
	}
	for _, name := range []string{"old-done", "old-partial", "synced-gone"} {
		if e.gone(name) {
			t.Errorf("backup %s removed on a failed listing", name)
		}
	}

	broken.Spec.Filesystem.Path = dir
	if err := e.cl.Update(e.ctx, broken); err != nil {
		t.Fatal(err)
	}
	if err := s.SyncOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"old-done", "old-partial", "synced-gone"} {
		if !e.gone(name) {
			t.Errorf("backup %s, gone from storage, was not removed", name)
		}
	}
	for _, name := range []string{"new", "running", "just-done", "failed", "elsewhere", "stored"} {
		if e.gone(name) {
			t.Errorf("backup %s was removed", name)
		}
	}
}

// A synced Backup is never run by the Backup reconciler, even before the sync wrote its status (a sync cut off
// half-way); the next sync finishes it; and once its folder is gone, it goes, though nothing is left to remove.
func TestSyncedBackupIsNeverRun(t *testing.T) {
	e := newEnv(t, nil, nil)
	e.available()
	stored := v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Name: "theirs-pvb", Labels: map[string]string{v1.NodeLabel: "node-a", v1.BackupLabel: "theirs"}},
		Spec:   v1.PodVolumeBackupSpec{Node: "node-a", Pod: v1.PodReference{Namespace: "app", Name: "web-0"}, Volume: "data", StorageLocation: "theirs"},
		Status: v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseCompleted, SnapshotID: "abc"}}
	storeBackup(t, e.storage(bsl.BackupsDir), "theirs", nil, stored)
	e.create(&v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "theirs", Annotations: map[string]string{v1.SyncedFromAnnotation: "default"}},
		Spec: v1.BackupSpec{StorageLocation: "default"}})
	// A Backup of this cluster with nothing to back up completes within this time.
	e.backup("control", v1.BackupSpec{IncludedNamespaces: []string{e.namespace("empty")}})
	e.waitPhase("control", v1.PhaseCompleted)
	time.Sleep(time.Second)
	if b := e.get("theirs"); b.Status.Phase != "" || len(e.pvbs("theirs")) != 0 || slices.Contains(e.eventReasons("theirs"), "Started") {
		t.Fatalf("the Backup reconciler ran a synced backup: status %+v", b.Status)
	}

	if err := e.syncer(time.Minute, 0).SyncOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	b := e.get("theirs")
	if b.Status.Phase != v1.PhaseCompleted || b.Status.VolumesTotal != 1 || !slices.Equal(b.Status.Warnings, []string{"a warning"}) {
		t.Errorf("resumed status %+v", b.Status)
	}
	pvbs := e.pvbs("theirs")
	if len(pvbs) != 1 || pvbs[0].Status.SnapshotID != "abc" || pvbs[0].Spec.StorageLocation != "default" {
		t.Errorf("resumed PodVolumeBackups %+v", pvbs)
	}

	// Its folder removed, and no repository left for its namespace: the sync removes it and its finalizer,
	// with nothing left to forget, lets it go at once.
	be := e.storage(bsl.BackupPath("theirs"))
	for _, name := range e.objects(bsl.BackupPath("theirs")) {
		if err := be.Delete(e.ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.syncer(time.Minute, 0).SyncOnce(e.ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the synced backup gone, finalizer and all", func() bool { return e.gone("theirs") })
	if reasons := e.eventReasons("theirs"); slices.Contains(reasons, "DeleteFailed") || !slices.Contains(reasons, "RemovedFromStorage") {
		t.Errorf("events %v", reasons)
	}
}

// A node-agent never runs a synced record, even one that reaches its cache (the node label set by hand): not
// when the PodVolumeBackup carries the synced annotation, not when its Backup does.
func TestNodeAgentIgnoresSyncedRecords(t *testing.T) {
	e := newEnv(t, nil, nil)
	const node = "node-sync"
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}, Cache: nodeagent.CacheOptions(node),
	})
	if err != nil {
		t.Fatal(err)
	}
	agent := &nodeagent.PodVolumeBackupReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), NodeName: node, Namespace: e.ns, HostPodsDir: t.TempDir()}
	if err := agent.SetupWithManager(mgr, 2); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node-agent manager: %v", err)
		}
	})

	e.create(&v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "synced", Annotations: map[string]string{v1.SyncedFromAnnotation: "default"}},
		Spec: v1.BackupSpec{StorageLocation: "default"}})
	pvb := func(name, backup string, annotations map[string]string) {
		e.create(&v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name, Annotations: annotations,
			Labels: map[string]string{v1.NodeLabel: node, v1.BackupLabel: backup}},
			Spec: v1.PodVolumeBackupSpec{Node: node, Pod: v1.PodReference{Namespace: "app", Name: "web-0", UID: "uid"}, Volume: "data", StorageLocation: "default"}})
	}
	pvb("of-synced-backup", "synced", nil)
	pvb("annotated", "other", map[string]string{v1.SyncedFromAnnotation: "default"})
	pvb("control", "no-such-backup", nil)
	var control v1.PodVolumeBackup
	waitFor(t, "the agent to take the control PodVolumeBackup", func() bool {
		return e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "control"}, &control) == nil && control.Status.Phase == v1.VolumePhaseFailed
	})
	time.Sleep(500 * time.Millisecond)
	for _, name := range []string{"of-synced-backup", "annotated"} {
		var got v1.PodVolumeBackup
		if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase != "" {
			t.Errorf("the node-agent took synced PodVolumeBackup %s: %+v", name, got.Status)
		}
	}
	var evs corev1.EventList
	_ = e.cl.List(e.ctx, &evs, client.InNamespace(e.ns))
	for _, ev := range evs.Items {
		if ev.InvolvedObject.Name == "of-synced-backup" || ev.InvolvedObject.Name == "annotated" {
			t.Errorf("event %s on synced PodVolumeBackup %s", ev.Reason, ev.InvolvedObject.Name)
		}
	}
}
