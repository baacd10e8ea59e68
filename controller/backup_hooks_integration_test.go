//go:build integration

package controller

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// orderExec records each hook it runs with the pod's PodVolumeBackups at that moment: how many existed and
// how many had ended.
type orderExec struct {
	e     *testEnv
	mu    sync.Mutex
	calls []string
}

func (x *orderExec) Exec(ctx context.Context, namespace, pod, container string, command []string, stdout, _ io.Writer) error {
	var list v1.PodVolumeBackupList
	if err := x.e.cl.List(ctx, &list, client.InNamespace(x.e.ns)); err != nil {
		return err
	}
	existing, ended := 0, 0
	for _, pvb := range list.Items {
		if pvb.Spec.Pod.Namespace == namespace && pvb.Spec.Pod.Name == pod {
			existing++
			if volumeTerminal(pvb.Status.Phase) {
				ended++
			}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.calls = append(x.calls, fmt.Sprintf("%s %s in %s: %d volumes, %d ended", pod, strings.Join(command, " "), container, existing, ended))
	fmt.Fprint(stdout, "ok")
	return nil
}

func (x *orderExec) ran() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.calls)
}

// TestBackupHooksOrder: spec hooks select the pod by label; its pre hook runs once, before any of its
// PodVolumeBackups exists (even as they are created over several reconciles under the cap), and its post hook
// runs once, only after every one of them ended.
func TestBackupHooksOrder(t *testing.T) {
	x := &orderExec{}
	e := newEnv(t, func(r *BackupReconciler) { r.MaxVolumesInFlight = 1; r.Exec = x }, nil)
	x.e = e
	ns := e.namespace("hooks")
	db := newPod(ns, "db").emptyDir("a", "b").ann(AnnotationBackupVolumes, "a,b")
	db.pod.Labels = map[string]string{"app": "db"}
	e.pod(db)
	e.pod(newPod(ns, "web").emptyDir("c").ann(AnnotationBackupVolumes, "c"))
	exec := func(cmd string) []v1.BackupResourceHook {
		return []v1.BackupResourceHook{{Exec: &v1.ExecHook{Command: []string{cmd}}}}
	}
	e.backup("hooked", v1.BackupSpec{IncludedNamespaces: []string{ns}, Hooks: v1.BackupHooks{Resources: []v1.BackupResourceHookSpec{{
		Name: "db", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Pre: exec("freeze"), Post: exec("thaw"),
	}}}})
	done := map[string]bool{}
	for len(done) < 3 {
		var next string
		waitFor(t, "the next PodVolumeBackup", func() bool {
			for _, p := range e.pvbs("hooked") {
				if !done[p.Name] {
					next = p.Name
					return true
				}
			}
			return false
		})
		e.setPVB(next, v1.VolumePhaseCompleted, v1.Progress{BytesDone: 1}, "s", "")
		done[next] = true
	}
	b := e.waitPhase("hooked", v1.PhaseCompleted)
	// The thaw saw both of db's volumes ended: not after the first, while the cap held the second back.
	want := []string{"db freeze in app: 0 volumes, 0 ended", "db thaw in app: 2 volumes, 2 ended"}
	if got := x.ran(); !slices.Equal(got, want) {
		t.Errorf("hooks ran %q, want %q", got, want)
	}
	if len(b.Status.Hooks) != 2 || b.Status.Hooks[0].Phase != v1.HookPhasePre || b.Status.Hooks[1].Phase != v1.HookPhasePost ||
		b.Status.Hooks[1].State != v1.HookSucceeded || b.Status.Hooks[1].Stdout != "ok" || b.Status.Hooks[1].Duration == nil {
		t.Errorf("status hooks %+v", b.Status.Hooks)
	}
}
