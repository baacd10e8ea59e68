package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/hooks"
)

// Each hook is recorded in the Backup's status as Running BEFORE its command starts, and the record is a
// status update under the Backup's resourceVersion: a reconcile that read a stale Backup gets a conflict and
// runs nothing. So a restarted controller that finds a pre hook Running knows it may have run and does not run
// it again (its outcome is unknown: it counts as failed), while a post hook found Running is run again: an
// unfreeze run twice is harmless, one never run leaves the application frozen.

// runPreHooks runs the pod's pre hooks that have no outcome yet, in order. It returns why the pod's volumes
// must not be backed up (a hook failed under on-error Fail), or "" to back them up.
func (r *BackupReconciler) runPreHooks(ctx context.Context, b *v1.Backup, pod *corev1.Pod) (string, error) {
	for _, h := range hooks.Resolve(pod, b.Spec.Hooks, v1.HookPhasePre) {
		i := hookResultIndex(b.Status.Hooks, string(pod.UID), v1.HookPhasePre, h.Index)
		switch {
		case i < 0:
			res, err := r.runHook(ctx, b, pod, h)
			if err != nil {
				return "", err
			}
			i = res
		case b.Status.Hooks[i].State == v1.HookRunning:
			b.Status.Hooks[i].State = v1.HookFailed
			b.Status.Hooks[i].Error = "the controller restarted while the hook ran; its outcome is unknown and it is not run twice"
			if err := r.Client.Status().Update(ctx, b); err != nil {
				return "", fmt.Errorf("record outcome of pre hook %d of pod %s/%s: %w", h.Index, pod.Namespace, pod.Name, err)
			}
			r.announceHook(b, &b.Status.Hooks[i])
		}
		if res := &b.Status.Hooks[i]; res.State == v1.HookFailed && res.OnError != v1.HookErrorContinue {
			return "pre hook failed: " + hookSummary(res), nil
		}
	}
	return "", nil
}

// runPostHooks runs the pod's post hooks that have not ended, all of them whatever their results: each may
// undo something a pre hook did.
func (r *BackupReconciler) runPostHooks(ctx context.Context, b *v1.Backup, ref v1.PodReference) error {
	var pod corev1.Pod
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}, &pod)
	if apierrors.IsNotFound(err) || (err == nil && string(pod.UID) != ref.UID) {
		// Gone, and whatever its hooks did went with it.
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pod %s/%s for its post hooks: %w", ref.Namespace, ref.Name, err)
	}
	for _, h := range hooks.Resolve(&pod, b.Spec.Hooks, v1.HookPhasePost) {
		i := hookResultIndex(b.Status.Hooks, ref.UID, v1.HookPhasePost, h.Index)
		if i >= 0 && b.Status.Hooks[i].State != v1.HookRunning {
			continue
		}
		if _, err := r.runHook(ctx, b, &pod, h); err != nil {
			return err
		}
	}
	return nil
}

// runHook records h as Running, runs it, and records its outcome; it returns the outcome's index in
// b.Status.Hooks. A post hook found Running (interrupted by a restart) is run again in its place.
func (r *BackupReconciler) runHook(ctx context.Context, b *v1.Backup, pod *corev1.Pod, h hooks.Hook) (int, error) {
	res := v1.HookResult{Namespace: pod.Namespace, Pod: pod.Name, PodUID: string(pod.UID), Phase: h.Phase, Index: h.Index,
		Container: h.Container, Command: h.Command, OnError: h.OnError, State: v1.HookRunning}
	i := hookResultIndex(b.Status.Hooks, res.PodUID, h.Phase, h.Index)
	if i < 0 {
		b.Status.Hooks = append(b.Status.Hooks, res)
		i = len(b.Status.Hooks) - 1
	} else {
		b.Status.Hooks[i] = res
	}
	if err := r.Client.Status().Update(ctx, b); err != nil {
		return 0, fmt.Errorf("record start of %s hook %d of pod %s/%s: %w", h.Phase, h.Index, pod.Namespace, pod.Name, err)
	}
	if r.Exec == nil && h.Problem == "" {
		h.Problem = "the controller runs no hooks: it has no pod executor"
	}
	b.Status.Hooks[i] = hooks.Run(ctx, r.Exec, r.Clock, pod.Namespace, pod.Name, h, res)
	if err := r.Client.Status().Update(ctx, b); err != nil {
		return 0, fmt.Errorf("record outcome of %s hook %d of pod %s/%s: %w", h.Phase, h.Index, pod.Namespace, pod.Name, err)
	}
	r.announceHook(b, &b.Status.Hooks[i])
	return i, nil
}

// postHooksDue runs the post hooks of every pod whose volumes have all ended: each of its PodVolumeBackups is
// terminal, and none of its volumes waits to be created.
func (r *BackupReconciler) postHooksDue(ctx context.Context, b *v1.Backup, pvbs []v1.PodVolumeBackup, waiting map[string]bool) error {
	done := map[string]bool{}
	var pods []v1.PodReference
	for i := range pvbs {
		ref := pvbs[i].Spec.Pod
		if _, seen := done[ref.UID]; !seen {
			pods = append(pods, ref)
			done[ref.UID] = !waiting[ref.UID]
		}
		if !volumeTerminal(pvbs[i].Status.Phase) {
			done[ref.UID] = false
		}
	}
	for _, ref := range pods {
		if done[ref.UID] {
			if err := r.runPostHooks(ctx, b, ref); err != nil {
				return err
			}
		}
	}
	return nil
}

// postHooksOnFailure runs the post hooks of every pod whose pre hooks ran, when the backup fails part-way.
func (r *BackupReconciler) postHooksOnFailure(ctx context.Context, b *v1.Backup) error {
	seen := map[string]bool{}
	var pods []v1.PodReference
	for _, res := range b.Status.Hooks {
		if res.Phase == v1.HookPhasePre && !seen[res.PodUID] {
			seen[res.PodUID] = true
			pods = append(pods, v1.PodReference{Namespace: res.Namespace, Name: res.Pod, UID: res.PodUID})
		}
	}
	for _, ref := range pods {
		if err := r.runPostHooks(ctx, b, ref); err != nil {
			return err
		}
	}
	return nil
}

// failVolumesOfFailedPods fails the PodVolumeBackups created for pods whose pre hook failed. They carry no
// node label, so no node-agent ever takes them; this gives them their end.
func (r *BackupReconciler) failVolumesOfFailedPods(ctx context.Context, b *v1.Backup, pvbs []v1.PodVolumeBackup) error {
	for i := range pvbs {
		pvb := &pvbs[i]
		if _, mine := pvb.Labels[v1.NodeLabel]; mine || volumeTerminal(pvb.Status.Phase) {
			continue
		}
		pvb.Status.Phase = v1.VolumePhaseFailed
		pvb.Status.Message = preHookFailure(b.Status.Hooks, pvb.Spec.Pod.UID)
		if err := r.Client.Status().Update(ctx, pvb); err != nil {
			return fmt.Errorf("fail PodVolumeBackup %s of a pod whose pre hook failed: %w", pvb.Name, err)
		}
	}
	return nil
}

// preHookFailure is the message of the pod's pre hook that stopped its backup.
func preHookFailure(results []v1.HookResult, podUID string) string {
	for i := range results {
		res := &results[i]
		if res.PodUID == podUID && res.Phase == v1.HookPhasePre && res.State == v1.HookFailed && res.OnError != v1.HookErrorContinue {
			return "pre hook failed: " + hookSummary(res)
		}
	}
	return "pre hook failed"
}

// hookWarnings lists the failed hooks that did not fail a volume: pre hooks under Continue, and post hooks.
func hookWarnings(results []v1.HookResult) []string {
	var out []string
	for i := range results {
		res := &results[i]
		if res.State == v1.HookFailed && (res.Phase == v1.HookPhasePost || res.OnError == v1.HookErrorContinue) {
			out = append(out, fmt.Sprintf("%s hook failed (on-error %s): %s", res.Phase, res.OnError, hookSummary(res)))
		}
	}
	return out
}

func hookResultIndex(results []v1.HookResult, podUID string, phase v1.HookPhase, index int) int {
	for i := range results {
		if results[i].PodUID == podUID && results[i].Phase == phase && results[i].Index == index {
			return i
		}
	}
	return -1
}

// hookSummary says which hook it was and how it ended, with the end of its error output.
func hookSummary(res *v1.HookResult) string {
	s := fmt.Sprintf("%s hook %d %q in container %s of pod %s/%s", res.Phase, res.Index, strings.Join(res.Command, " "), res.Container, res.Namespace, res.Pod)
	if res.State != v1.HookFailed {
		return s + ": " + string(res.State)
	}
	s += ": " + res.Error
	if out := lastLine(res.Stderr); out != "" {
		s += ": " + out
	}
	return s
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func (r *BackupReconciler) announceHook(b *v1.Backup, res *v1.HookResult) {
	if res.State == v1.HookFailed {
		r.Events.Eventf(b, nil, corev1.EventTypeWarning, "HookFailed", "Hook", "%s", hookSummary(res))
		return
	}
	took := ""
	if res.Duration != nil {
		took = " in " + res.Duration.Duration.String()
	}
	r.Events.Eventf(b, nil, corev1.EventTypeNormal, "HookSucceeded", "Hook", "%s%s", hookSummary(res), took)
}
