package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
)

// newPVB builds a PodVolumeBackup of node-a in phase, changed by opts.
func newPVB(phase v1.VolumePhase, opts ...func(*v1.PodVolumeBackup)) *v1.PodVolumeBackup {
	p := &v1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{Name: "pvb", Namespace: "straddle", UID: types.UID("uid-pvb"), Labels: map[string]string{v1.NodeLabel: "node-a"}},
		Spec: v1.PodVolumeBackupSpec{Node: "node-a", Pod: v1.PodReference{Namespace: "app", Name: "web-0", UID: "pod-uid"},
			Volume: "data", StorageLocation: "default"},
		Status: v1.PodVolumeBackupStatus{Phase: phase},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// writes counts what a reconcile wrote to the API.
type writes struct{ updates, statusUpdates, patches atomic.Int32 }

func newReconciler(t *testing.T, pvb *v1.PodVolumeBackup, w *writes, funcs interceptor.Funcs) (*PodVolumeBackupReconciler, client.Client, *atomic.Int32) {
	t.Helper()
	scheme := runtime.NewScheme()
	_ = v1.AddToScheme(scheme)
	if funcs.SubResourceUpdate == nil {
		funcs.SubResourceUpdate = func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			w.statusUpdates.Add(1)
			return c.SubResource(sub).Update(ctx, obj, opts...)
		}
	}
	funcs.Update = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
		w.updates.Add(1)
		return c.Update(ctx, obj, opts...)
	}
	funcs.SubResourcePatch = func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
		w.patches.Add(1)
		return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(pvb).WithStatusSubresource(&v1.PodVolumeBackup{}).WithInterceptorFuncs(funcs).Build()
	var ran atomic.Int32
	r := &PodVolumeBackupReconciler{Client: cl, APIReader: cl, NodeName: "node-a", Namespace: "straddle", HostPodsDir: t.TempDir(),
		ProgressInterval: 10 * time.Millisecond,
		beforeBackup:     func(context.Context, *v1.PodVolumeBackup) { ran.Add(1) }}
	r.setDefaults()
	return r, cl, &ran
}

func reconcile(t *testing.T, r *PodVolumeBackupReconciler) ctrl.Result {
	t.Helper()
	res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "straddle", Name: "pvb"}})
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	return res
}

func TestLeftAlone(t *testing.T) {
	for name, pvb := range map[string]*v1.PodVolumeBackup{
		"another node's, though labelled ours": newPVB("", func(p *v1.PodVolumeBackup) { p.Spec.Node = "node-b" }),
		"completed":                            newPVB(v1.VolumePhaseCompleted),
		"failed":                               newPVB(v1.VolumePhaseFailed),
		"canceled":                             newPVB(v1.VolumePhaseCanceled),
		"being deleted": newPVB("", func(p *v1.PodVolumeBackup) {
			p.Finalizers = []string{"test/hold"}
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			var w writes
			r, _, ran := newReconciler(t, pvb, &w, interceptor.Funcs{})
			reconcile(t, r)
			if n := w.updates.Load() + w.statusUpdates.Load() + w.patches.Load(); n != 0 || ran.Load() != 0 {
				t.Errorf("%d writes, %d backups run", n, ran.Load())
			}
		})
	}
}

// A conflict when taking a new PodVolumeBackup means someone else moved it: look again, do not run it.
func TestTakeConflictRequeuesWithoutRunning(t *testing.T) {
	var w writes
	r, cl, ran := newReconciler(t, newPVB(v1.VolumePhaseNew), &w, interceptor.Funcs{
		SubResourceUpdate: func(context.Context, client.Client, string, client.Object, ...client.SubResourceUpdateOption) error {
			return apierrors.NewConflict(v1.GroupVersion.WithResource("podvolumebackups").GroupResource(), "pvb", nil)
		},
	})
	if res := reconcile(t, r); res.RequeueAfter <= 0 {
		t.Errorf("result %+v, want a requeue", res)
	}
	if ran.Load() != 0 || r.startedHere("uid-pvb") {
		t.Error("the backup ran after a conflict")
	}
	var got v1.PodVolumeBackup
	_ = cl.Get(context.Background(), client.ObjectKey{Namespace: "straddle", Name: "pvb"}, &got)
	if got.Status.Phase != v1.VolumePhaseNew {
		t.Errorf("phase %q", got.Status.Phase)
	}
}

// Taken, run, failed with the reason (nothing is under the host pods dir), and never run twice by this process.
func TestTakeRunsOnceAndRecordsFailure(t *testing.T) {
	var w writes
	r, cl, ran := newReconciler(t, newPVB(""), &w, interceptor.Funcs{})
	reconcile(t, r)
	var got v1.PodVolumeBackup
	_ = cl.Get(context.Background(), client.ObjectKey{Namespace: "straddle", Name: "pvb"}, &got)
	if got.Status.Phase != v1.VolumePhaseFailed || !strings.Contains(got.Status.Message, `volume "data" of pod app/web-0 not found under`) ||
		got.Status.StartTimestamp == nil || got.Status.CompletionTimestamp == nil {
		t.Errorf("status %+v", got.Status)
	}
	if ran.Load() != 1 {
		t.Errorf("ran %d times", ran.Load())
	}
	// Seen InProgress through a lagging cache after it ran: this process's own, not a dead agent's.
	got.Status.Phase = v1.VolumePhaseInProgress
	if err := cl.Status().Update(context.Background(), &got); err != nil {
		t.Fatal(err)
	}
	reconcile(t, r)
	if ran.Load() != 1 || w.updates.Load() != 0 {
		t.Errorf("ran %d times, %d updates: the agent's own backup was taken for a dead agent's", ran.Load(), w.updates.Load())
	}
}

func TestResumeCountsAttempts(t *testing.T) {
	attempts := func(n string) func(*v1.PodVolumeBackup) {
		return func(p *v1.PodVolumeBackup) { p.Annotations = map[string]string{AttemptsAnnotation: n} }
	}
	// readSoFar sets the furthest an earlier attempt got and what the one that just died had read.
	readSoFar := func(furthest string, done int64) func(*v1.PodVolumeBackup) {
		return func(p *v1.PodVolumeBackup) {
			p.Annotations[FurthestAnnotation] = furthest
			p.Status.Progress.BytesDone = done
		}
	}
	for _, c := range []struct {
		name         string
		pvb          *v1.PodVolumeBackup
		runs         int32
		wantAttempts string
		wantMessage  string
	}{
		{"first restart runs it again", newPVB(v1.VolumePhaseInProgress), 1, "2", "not found under"},
		{"unreadable count is a first attempt", newPVB(v1.VolumePhaseInProgress, attempts("x")), 1, "2", "not found under"},
		{"at the limit it fails", newPVB(v1.VolumePhaseInProgress, attempts("2")), 0, "2", "node-agent restarted during the backup 2 times"},
		{"at the limit, further than ever, it runs again", newPVB(v1.VolumePhaseInProgress, attempts("2"), readSoFar("100", 150)), 1, "3", "not found under"},
		{"at the limit, not further, it fails", newPVB(v1.VolumePhaseInProgress, attempts("2"), readSoFar("150", 100)), 0, "2", "the last time before the backup got further"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var w writes
			r, cl, ran := newReconciler(t, c.pvb, &w, interceptor.Funcs{})
			reconcile(t, r)
			var got v1.PodVolumeBackup
			_ = cl.Get(context.Background(), client.ObjectKey{Namespace: "straddle", Name: "pvb"}, &got)
			if ran.Load() != c.runs || got.Annotations[AttemptsAnnotation] != c.wantAttempts {
				t.Errorf("ran %d times (want %d), attempts %q (want %q)", ran.Load(), c.runs, got.Annotations[AttemptsAnnotation], c.wantAttempts)
			}
			if got.Status.Phase != v1.VolumePhaseFailed || !strings.Contains(got.Status.Message, c.wantMessage) {
				t.Errorf("status %+v, want Failed saying %q", got.Status, c.wantMessage)
			}
		})
	}
}

func TestMetricsCountOutcomes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	// A second agent in the same process shares the metrics rather than failing to start.
	if again, err := NewMetrics(reg); err != nil || again.backups != m.backups {
		t.Fatalf("registering twice: %v", err)
	}
	var w writes
	r, _, _ := newReconciler(t, newPVB(""), &w, interceptor.Funcs{})
	r.Metrics = m
	reconcile(t, r)
	done := m.started()
	done(&volumeResult{Progress: v1.Progress{BytesDone: 100, FilesDone: 3}, Stats: v1.VolumeStats{BytesRead: 90, BytesAdded: 40, BytesStored: 25}}, nil)
	// The failed backup recorded a Warning event, counted by the wrapped recorder.
	m.Recorder(nil).Eventf(newPVB(""), nil, corev1.EventTypeWarning, ReasonFailed, "Backup", "backup failed")

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
	for name, want := range map[string]float64{
		"straddle_node_agent_volume_backups_total/failed":                          1,
		"straddle_node_agent_volume_backups_total/completed":                       1,
		"straddle_node_agent_volume_backups_total/canceled":                        0,
		"straddle_node_agent_volume_backups_running":                               0,
		"straddle_node_agent_backup_bytes_total":                                   100,
		"straddle_node_agent_backup_files_total":                                   3,
		"straddle_node_agent_backup_bytes_added_total":                             40,
		"straddle_node_agent_backup_bytes_read_total":                              90,
		"straddle_node_agent_backup_bytes_stored_total":                            25,
		"straddle_node_agent_warning_events_total/PodVolumeBackup/" + ReasonFailed: 1,
		"straddle_node_agent_volume_backup_duration_seconds":                       2,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
}

func TestWarningsAreListedUpToALimitThenCounted(t *testing.T) {
	out := &backup.Result{Snapshot: &snapshot.Snapshot{ID: id.Random()}, Summary: snapshot.Summary{FilesNew: 2, BytesTotal: 10}}
	for i := range maxWarnings + 5 {
		out.Warnings = append(out.Warnings, backup.Warning{Path: fmt.Sprintf("/v/f%d", i), Err: errors.New("permission denied")})
	}
	res := newVolumeResult(out, []string{"parent snapshot abc is not in the repository; every file was read"})
	if len(res.Warnings) != maxWarnings+1 {
		t.Fatalf("%d warnings listed, want %d and a count", len(res.Warnings), maxWarnings)
	}
	if !strings.HasPrefix(res.Warnings[0], "parent snapshot") || res.Warnings[1] != "/v/f0: permission denied" {
		t.Errorf("first warnings %q", res.Warnings[:2])
	}
	if last := res.Warnings[maxWarnings]; last != "and 6 more files or directories that could not be read" {
		t.Errorf("last warning %q", last)
	}
	if res.SnapshotID != out.Snapshot.ID.String() || res.Progress.FilesDone != 2 || res.Progress.BytesDone != 10 {
		t.Errorf("result %+v", res)
	}
}

// Records the controller copied from storage are another cluster's finished work: never run, even when one
// reaches this agent New (its node label set by hand, or its status not written yet).
func TestSyncedRecordsLeftAlone(t *testing.T) {
	t.Run("the PodVolumeBackup is annotated", func(t *testing.T) {
		var w writes
		r, _, ran := newReconciler(t, newPVB("", func(p *v1.PodVolumeBackup) {
			p.Annotations = map[string]string{v1.SyncedFromAnnotation: "default"}
		}), &w, interceptor.Funcs{})
		reconcile(t, r)
		if n := w.updates.Load() + w.statusUpdates.Load() + w.patches.Load(); n != 0 || ran.Load() != 0 {
			t.Errorf("%d writes, %d backups run", n, ran.Load())
		}
	})
	t.Run("its Backup is annotated", func(t *testing.T) {
		var w writes
		r, cl, ran := newReconciler(t, newPVB(v1.VolumePhaseNew, func(p *v1.PodVolumeBackup) { p.Labels[v1.BackupLabel] = "b1" }), &w, interceptor.Funcs{})
		b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "b1", Annotations: map[string]string{v1.SyncedFromAnnotation: "default"}}}
		if err := cl.Create(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		reconcile(t, r)
		if n := w.updates.Load() + w.statusUpdates.Load() + w.patches.Load(); n != 0 || ran.Load() != 0 {
			t.Errorf("%d writes, %d backups run", n, ran.Load())
		}
	})
	t.Run("its Backup is this cluster's", func(t *testing.T) {
		var w writes
		r, cl, ran := newReconciler(t, newPVB(v1.VolumePhaseNew, func(p *v1.PodVolumeBackup) { p.Labels[v1.BackupLabel] = "b1" }), &w, interceptor.Funcs{})
		if err := cl.Create(context.Background(), &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "b1"}}); err != nil {
			t.Fatal(err)
		}
		reconcile(t, r)
		if ran.Load() != 1 {
			t.Errorf("%d backups run, want 1", ran.Load())
		}
	})
}
