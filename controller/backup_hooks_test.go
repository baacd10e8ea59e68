package controller

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// recordingExec records the commands it runs and fails those whose first word is "fail".
type recordingExec struct{ ran []string }

func (e *recordingExec) Exec(_ context.Context, _, pod, _ string, command []string, _, stderr io.Writer) error {
	e.ran = append(e.ran, pod+":"+strings.Join(command, " "))
	if command[0] == "fail" {
		io.WriteString(stderr, "no database\n")
		return exitError(1)
	}
	return nil
}

type exitError int

func (e exitError) Error() string   { return "command terminated with non-zero exit code" }
func (e exitError) ExitStatus() int { return int(e) }

func hookPod(name string, annotations map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, UID: types.UID(name + "-uid"), Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main"}}},
	}
}

func hookTestReconciler(t *testing.T, objs ...client.Object) (*BackupReconciler, *v1.Backup, *recordingExec) {
	t.Helper()
	s := runtime.NewScheme()
	_ = v1.AddToScheme(s)
	_ = corev1.AddToScheme(s)
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "b1"}, Status: v1.BackupStatus{Phase: v1.PhaseInProgress}}
	cl := fake.NewClientBuilder().WithScheme(s).WithObjects(append(objs, b)...).WithStatusSubresource(&v1.Backup{}, &v1.PodVolumeBackup{}).Build()
	if err := cl.Get(context.Background(), client.ObjectKeyFromObject(b), b); err != nil {
		t.Fatal(err)
	}
	ex := &recordingExec{}
	return &BackupReconciler{Client: cl, Clock: clocktesting.NewFakePassiveClock(time.Now()), Events: events.NewFakeRecorder(100), Namespace: "straddle", Exec: ex}, b, ex
}

func prePost(pre, post string, more ...string) map[string]string {
	a := map[string]string{"pre.hook.backup.straddle.io/command": pre, "post.hook.backup.straddle.io/command": post}
	for i := 0; i+1 < len(more); i += 2 {
		a[more[i]] = more[i+1]
	}
	return a
}

func TestPreHooksRunOnceAndRecordFirst(t *testing.T) {
	pod := hookPod("db", prePost(`["freeze"]`, `["thaw"]`))
	r, b, ex := hookTestReconciler(t, pod)
	ctx := context.Background()
	for range 2 {
		failure, err := r.runPreHooks(ctx, b, pod)
		if err != nil || failure != "" {
			t.Fatalf("runPreHooks: %q, %v", failure, err)
		}
	}
	if !slices.Equal(ex.ran, []string{"db:freeze"}) {
		t.Fatalf("ran %v, want the pre hook once", ex.ran)
	}
	var stored v1.Backup
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(b), &stored); err != nil {
		t.Fatal(err)
	}
	if len(stored.Status.Hooks) != 1 || stored.Status.Hooks[0].State != v1.HookSucceeded || *stored.Status.Hooks[0].ExitCode != 0 || stored.Status.Hooks[0].Container != "main" {
		t.Fatalf("stored hooks %+v", stored.Status.Hooks)
	}
}

func TestPreHookFoundRunningIsNotRunAgain(t *testing.T) {
	pod := hookPod("db", prePost(`["freeze"]`, `["thaw"]`))
	r, b, ex := hookTestReconciler(t, pod)
	// A controller died while the hook ran.
	b.Status.Hooks = []v1.HookResult{{Namespace: "app", Pod: "db", PodUID: "db-uid", Phase: v1.HookPhasePre, Container: "main", Command: []string{"freeze"}, OnError: v1.HookErrorFail, State: v1.HookRunning}}
	failure, err := r.runPreHooks(context.Background(), b, pod)
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.ran) != 0 || !strings.Contains(failure, "controller restarted") || b.Status.Hooks[0].State != v1.HookFailed {
		t.Fatalf("ran %v, failure %q, hooks %+v", ex.ran, failure, b.Status.Hooks)
	}
}

func TestPreHookFailure(t *testing.T) {
	for _, mode := range []v1.HookErrorMode{v1.HookErrorFail, v1.HookErrorContinue} {
		t.Run(string(mode), func(t *testing.T) {
			pod := hookPod("db", prePost(`["fail","now"]`, `["thaw"]`, "pre.hook.backup.straddle.io/on-error", string(mode)))
			r, b, _ := hookTestReconciler(t, pod)
			failure, err := r.runPreHooks(context.Background(), b, pod)
			if err != nil {
				t.Fatal(err)
			}
			warnings := hookWarnings(b.Status.Hooks)
			if mode == v1.HookErrorFail {
				if !strings.Contains(failure, "exited with code 1: no database") || len(warnings) != 0 {
					t.Fatalf("failure %q, warnings %v", failure, warnings)
				}
				return
			}
			if failure != "" || len(warnings) != 1 || !strings.Contains(warnings[0], "no database") {
				t.Fatalf("failure %q, warnings %v", failure, warnings)
			}
		})
	}
}

func TestPostHooksWaitForEveryVolumeOfThePod(t *testing.T) {
	db, web := hookPod("db", prePost(`["freeze"]`, `["thaw"]`)), hookPod("web", prePost(`["freeze"]`, `["thaw"]`))
	r, b, ex := hookTestReconciler(t, db, web)
	pvb := func(pod *corev1.Pod, volume string, phase v1.VolumePhase) v1.PodVolumeBackup {
		return v1.PodVolumeBackup{Spec: v1.PodVolumeBackupSpec{Pod: v1.PodReference{Namespace: "app", Name: pod.Name, UID: string(pod.UID)}, Volume: volume}, Status: v1.PodVolumeBackupStatus{Phase: phase}}
	}
	ctx := context.Background()
	pvbs := []v1.PodVolumeBackup{pvb(db, "a", v1.VolumePhaseCompleted), pvb(db, "b", v1.VolumePhaseInProgress), pvb(web, "a", v1.VolumePhaseFailed)}
	// web still has a volume to create.
	if err := r.postHooksDue(ctx, b, pvbs, map[string]bool{"web-uid": true}); err != nil {
		t.Fatal(err)
	}
	if len(ex.ran) != 0 {
		t.Fatalf("ran %v before any pod's volumes all ended", ex.ran)
	}
	pvbs[1].Status.Phase = v1.VolumePhaseFailed
	for range 2 {
		if err := r.postHooksDue(ctx, b, pvbs, nil); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(ex.ran, []string{"db:thaw", "web:thaw"}) {
		t.Fatalf("ran %v, want each post hook once, failed volumes or not", ex.ran)
	}
	// One found Running after a restart runs again: an application is never left frozen.
	b.Status.Hooks[0].State = v1.HookRunning
	if err := r.postHooksDue(ctx, b, pvbs, nil); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ex.ran, []string{"db:thaw", "web:thaw", "db:thaw"}) {
		t.Fatalf("ran %v", ex.ran)
	}
}

func TestPostHooksOnFailure(t *testing.T) {
	db, web := hookPod("db", prePost(`["freeze"]`, `["thaw"]`)), hookPod("web", prePost(`["freeze"]`, `["thaw"]`))
	r, b, ex := hookTestReconciler(t, db, web)
	ctx := context.Background()
	if _, err := r.runPreHooks(ctx, b, db); err != nil {
		t.Fatal(err)
	}
	if err := r.postHooksOnFailure(ctx, b); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ex.ran, []string{"db:freeze", "db:thaw"}) {
		t.Fatalf("ran %v, want the post hook of the pod whose pre hook ran, only", ex.ran)
	}
}

func TestFailVolumesOfFailedPods(t *testing.T) {
	mk := func(name string, labels map[string]string) *v1.PodVolumeBackup {
		return &v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: name, Labels: labels},
			Spec: v1.PodVolumeBackupSpec{Pod: v1.PodReference{Namespace: "app", Name: "db", UID: "db-uid"}, Volume: "data"}}
	}
	orphan, taken := mk("orphan", map[string]string{v1.BackupLabel: "b1"}), mk("taken", map[string]string{v1.BackupLabel: "b1", v1.NodeLabel: "n1"})
	r, b, _ := hookTestReconciler(t, orphan, taken)
	b.Status.Hooks = []v1.HookResult{{Namespace: "app", Pod: "db", PodUID: "db-uid", Phase: v1.HookPhasePre, Command: []string{"freeze"}, OnError: v1.HookErrorFail, State: v1.HookFailed, Error: "exited with code 2"}}
	ctx := context.Background()
	var list v1.PodVolumeBackupList
	if err := r.Client.List(ctx, &list); err != nil {
		t.Fatal(err)
	}
	if err := r.failVolumesOfFailedPods(ctx, b, list.Items); err != nil {
		t.Fatal(err)
	}
	for _, pvb := range list.Items {
		var got v1.PodVolumeBackup
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(&pvb), &got); err != nil {
			t.Fatal(err)
		}
		failed := got.Status.Phase == v1.VolumePhaseFailed && strings.Contains(got.Status.Message, "pre hook failed") && strings.Contains(got.Status.Message, "exited with code 2")
		if failed != (got.Name == "orphan") {
			t.Errorf("%s: %s %q", got.Name, got.Status.Phase, got.Status.Message)
		}
	}
}
