package nodeagent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/node-agent/hostpods"
)

// The controller fails a running volume when its Backup times out: the agent stops the work and its own
// outcome never replaces the controller's.
func TestAVolumeTheControllerEndsStopsAndStaysEnded(t *testing.T) {
	var w writes
	r, cl, _ := newReconciler(t, newPVB(""), &w, interceptor.Funcs{})
	stopped := make(chan struct{})
	r.beforeBackup = func(ctx context.Context, pvb *v1.PodVolumeBackup) {
		var cur v1.PodVolumeBackup
		if err := cl.Get(ctx, client.ObjectKeyFromObject(pvb), &cur); err != nil {
			t.Error(err)
			return
		}
		cur.Status.Phase, cur.Status.Message = v1.VolumePhaseFailed, "timed out after 20s"
		if err := cl.Status().Update(ctx, &cur); err != nil {
			t.Error(err)
			return
		}
		select {
		case <-ctx.Done():
			close(stopped)
		case <-time.After(10 * time.Second):
			t.Error("the backup went on after its PodVolumeBackup was Failed by the controller")
		}
	}
	reconcile(t, r)
	select {
	case <-stopped:
	default:
		t.Fatal("the backup was not stopped")
	}
	var got v1.PodVolumeBackup
	if err := cl.Get(context.Background(), client.ObjectKey{Namespace: "straddle", Name: "pvb"}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1.VolumePhaseFailed || got.Status.Message != "timed out after 20s" {
		t.Errorf("status %+v: the agent overwrote the controller's Failed", got.Status)
	}
}

// A backup that finished just as the controller failed it records nothing: finish sees the newest phase.
func TestFinishLeavesAnEndedVolumeAlone(t *testing.T) {
	for _, phase := range []v1.VolumePhase{v1.VolumePhaseFailed, v1.VolumePhaseCompleted, v1.VolumePhaseCanceled} {
		stored := newPVB(phase)
		stored.Status.Message = "timed out after 20s"
		var w writes
		r, cl, _ := newReconciler(t, stored, &w, interceptor.Funcs{})
		running := newPVB(v1.VolumePhaseInProgress)
		for _, outcome := range []error{nil, errors.New("disk on fire")} {
			if err := r.finish(context.Background(), running, &volumeResult{SnapshotID: "abc"}, outcome); err != nil {
				t.Errorf("finish over %s: %v", phase, err)
			}
		}
		var got v1.PodVolumeBackup
		if err := cl.Get(context.Background(), client.ObjectKey{Namespace: "straddle", Name: "pvb"}, &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase != phase || got.Status.Message != "timed out after 20s" || got.Status.SnapshotID != "" || w.statusUpdates.Load() != 0 {
			t.Errorf("over %s: status %+v after %d status writes; want it untouched", phase, got.Status, w.statusUpdates.Load())
		}
	}
}

func TestAMissingFolderSaysWhyItIsGone(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1.AddToScheme(scheme)
	pod := func(uid string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-0", UID: types.UID(uid)}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			p.Finalizers = []string{"example.com/hold"}
		}
		return p
	}
	resumedPVB := newPVB(v1.VolumePhaseInProgress, func(p *v1.PodVolumeBackup) { p.Annotations = map[string]string{AttemptsAnnotation: "2"} })
	notFound := errors.New(`volume "data" of pod app/web-0 not found under /host_pods/pod-uid/volumes: ` + hostpods.ErrNotFound.Error())
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		pvb  *v1.PodVolumeBackup
		want string
	}{
		{"pod deleted", nil, newPVB(v1.VolumePhaseInProgress), "pod app/web-0 was deleted"},
		{"pod replaced by another of the same name", pod("other-uid", false), resumedPVB, "pod app/web-0 was deleted"},
		{"pod being deleted", pod("pod-uid", true), newPVB(v1.VolumePhaseInProgress), "pod app/web-0 was deleted"},
		{"resumed backup whose volume went", pod("pod-uid", false), resumedPVB, `volume data of pod app/web-0 is gone: volume "data" of pod app/web-0 not found under`},
		{"first attempt: the finder's message stands", pod("pod-uid", false), newPVB(v1.VolumePhaseInProgress), `volume "data" of pod app/web-0 not found under`},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := fake.NewClientBuilder().WithScheme(scheme)
			if c.pod != nil {
				b = b.WithObjects(c.pod)
			}
			r := &PodVolumeBackupReconciler{APIReader: b.Build()}
			err := r.whyMissing(context.Background(), c.pvb, notFound)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("whyMissing: %v, want it to start with %q", err, c.want)
			}
		})
	}
}
