package controller

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// A volume's outcome is what happened to the pod standing for it now, or data that arrived in one since
// gone; what a PodVolumeRestore did for a pod deleted before its data came is not the volume's outcome, and
// such a volume waits the replacement grace before it counts as lost.
func TestFollowVolumesCountsVolumesNotPods(t *testing.T) {
	start := time.Date(2026, 11, 25, 7, 0, 0, 0, time.UTC)
	owned := func(name, snapshot string, phase v1.VolumePhase) *v1.PodVolumeRestore {
		return &v1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: name, Labels: map[string]string{v1.RestoreLabel: "r1"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "straddle.io/v1alpha1", Kind: "Restore", Name: "r1", UID: "ruid", Controller: ptr.To(true)}}},
			Spec:   v1.PodVolumeRestoreSpec{SourceNamespace: "app", SnapshotID: snapshot, Volume: "data"},
			Status: v1.PodVolumeRestoreStatus{Phase: phase}}
	}
	for _, tc := range []struct {
		name      string
		pvrs      []client.Object
		advance   time.Duration
		wantPhase v1.Phase
		completed int
		failed    int
	}{
		{"data arrived, pod deleted since", []client.Object{owned("p1", "s1", v1.VolumePhaseCompleted)}, 0, v1.PhaseCompleted, 1, 0},
		{"pod deleted before its data came: wait for its replacement", []client.Object{owned("p1", "s1", v1.VolumePhaseFailed)}, 0, v1.PhaseInProgress, 0, 0},
		{"no replacement within the grace: lost", []client.Object{owned("p1", "s1", v1.VolumePhaseFailed)}, time.Minute + time.Second, v1.PhasePartiallyFailed, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := runtime.NewScheme()
			_ = v1.AddToScheme(s)
			_ = corev1.AddToScheme(s)
			rs := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "r1", UID: "ruid"},
				Status: v1.RestoreStatus{Phase: v1.PhaseInProgress, VolumesTotal: 1,
					Conditions: []metav1.Condition{{Type: ConditionResourcesRestored, Status: metav1.ConditionTrue, Reason: "Created", LastTransitionTime: metav1.NewTime(start)}}}}
			cl := fake.NewClientBuilder().WithScheme(s).WithObjects(append(tc.pvrs, rs)...).WithStatusSubresource(rs).Build()
			clock := clocktesting.NewFakePassiveClock(start)
			r := &RestoreReconciler{Client: cl, APIReader: cl, Clock: clock, Events: events.NewFakeRecorder(100), Namespace: "straddle", ReplacementGrace: time.Minute}
			ctx := context.Background()
			req := client.ObjectKeyFromObject(rs)
			res, err := r.Reconcile(ctx, reconcileRequest(req))
			if err != nil {
				t.Fatal(err)
			}
			if tc.advance > 0 {
				if res.RequeueAfter <= 0 || res.RequeueAfter > time.Minute+time.Second {
					t.Errorf("requeue after %s, want about the grace", res.RequeueAfter)
				}
				clock.SetTime(start.Add(tc.advance))
				if _, err := r.Reconcile(ctx, reconcileRequest(req)); err != nil {
					t.Fatal(err)
				}
			}
			var got v1.Restore
			if err := cl.Get(ctx, req, &got); err != nil {
				t.Fatal(err)
			}
			if got.Status.Phase != tc.wantPhase || got.Status.VolumesCompleted != tc.completed || got.Status.VolumesFailed != tc.failed {
				t.Errorf("phase %s, completed %d, failed %d; want %s, %d, %d (errors %q)", got.Status.Phase, got.Status.VolumesCompleted,
					got.Status.VolumesFailed, tc.wantPhase, tc.completed, tc.failed, got.Status.Errors)
			}
			if tc.wantPhase == v1.PhaseInProgress && !meta.IsStatusConditionTrue(got.Status.Conditions, ConditionResourcesRestored) {
				t.Error("condition lost")
			}
		})
	}
}

func reconcileRequest(key client.ObjectKey) ctrl.Request { return ctrl.Request{NamespacedName: key} }
