//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// hookAnnotations are a pod's pre and post hook annotations (Straddle's names); extra are more keys.
func hookAnnotations(pre, post string, extra ...string) map[string]string {
	a := map[string]string{}
	if pre != "" {
		a["pre.hook.backup.straddle.io/command"] = pre
	}
	if post != "" {
		a["post.hook.backup.straddle.io/command"] = post
	}
	for i := 0; i+1 < len(extra); i += 2 {
		a[extra[i]] = extra[i+1]
	}
	return a
}

// TestBackupHooks runs pre and post exec hooks through the real API server's pods/exec, proxied to the kubelet
// simulator, which runs them in the pod's volume folder: a marker a pre hook writes is in the snapshot and gone
// from the live volume after the post hook; a failing pre hook fails the pod's volume under on-error Fail and
// only warns under Continue; a hanging hook is killed at its timeout; post hooks run though the volume failed.
// Then a restore with an init hook: it runs after restore-wait and sees the restored marker.
func TestBackupHooks(t *testing.T) {
	c := startCluster(t, clusterOptions{DefaultVolumesToFsBackup: true})
	ctx := context.Background()
	for _, ns := range []string{"hooks", "hooks-ok"} {
		mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	thaw := `["sh","-c","echo thawed > post-ran"]`
	pods := []*corev1.Pod{
		// Velero's names are honoured too.
		testPod("hooks-ok", "marker", nodeA, map[string]string{
			"pre.hook.backup.velero.io/command":    `["sh","-c","echo frozen > marker"]`,
			"post.hook.backup.straddle.io/command": `["rm","marker"]`,
		}, emptyDirVolume("data")),
		testPod("hooks", "failing", nodeA, hookAnnotations(`["sh","-c","echo cannot flush >&2; exit 3"]`, thaw), emptyDirVolume("data")),
		testPod("hooks", "continue", nodeB, hookAnnotations(`["sh","-c","exit 4"]`, thaw, "pre.hook.backup.straddle.io/on-error", "Continue"), emptyDirVolume("data")),
		testPod("hooks", "hang", nodeB, hookAnnotations(`["sleep","600"]`, thaw, "pre.hook.backup.straddle.io/timeout", "3s"), emptyDirVolume("data")),
		// The pre hook removes the second volume's folder, so the node-agent fails that volume.
		testPod("hooks", "volfail", nodeA, hookAnnotations(`["sh","-c","rm -rf ../data"]`, thaw), emptyDirVolume("scratch"), emptyDirVolume("data")),
	}
	for _, p := range pods {
		mustCreate(t, c.cl, p)
	}
	c.waitPodsRunning(t, "hooks", 4)
	c.waitPodsRunning(t, "hooks-ok", 1)

	c.createBackup(t, "hooked", v1.BackupSpec{IncludedNamespaces: []string{"hooks", "hooks-ok"}})
	b := c.waitBackup(t, "hooked", 3*time.Minute)
	if b.Status.Phase != v1.PhasePartiallyFailed {
		t.Errorf("backup phase %s, want PartiallyFailed", b.Status.Phase)
	}
	pvbs := c.volumeBackups(t, "hooked")
	for key, want := range map[string]struct {
		phase   v1.VolumePhase
		message []string
	}{
		"hooks-ok/marker/data":  {phase: v1.VolumePhaseCompleted},
		"hooks/failing/data":    {phase: v1.VolumePhaseFailed, message: []string{"pre hook failed", "exited with code 3", "cannot flush"}},
		"hooks/continue/data":   {phase: v1.VolumePhaseCompleted},
		"hooks/hang/data":       {phase: v1.VolumePhaseFailed, message: []string{"timed out after 3s"}},
		"hooks/volfail/scratch": {phase: v1.VolumePhaseCompleted},
		"hooks/volfail/data":    {phase: v1.VolumePhaseFailed},
	} {
		pvb, ok := pvbs[key]
		if !ok {
			t.Errorf("no PodVolumeBackup of %s (have %v)", key, sortedKeys(pvbs))
			continue
		}
		if pvb.Status.Phase != want.phase {
			t.Errorf("%s: %s (%s), want %s", key, pvb.Status.Phase, pvb.Status.Message, want.phase)
		}
		for _, m := range want.message {
			if !strings.Contains(pvb.Status.Message, m) {
				t.Errorf("%s: message %q lacks %q", key, pvb.Status.Message, m)
			}
		}
	}
	if !slices.ContainsFunc(b.Status.Warnings, func(w string) bool {
		return strings.Contains(w, "exited with code 4") && strings.Contains(w, "hooks/continue")
	}) {
		t.Errorf("no warning for the Continue pre hook: %q", b.Status.Warnings)
	}

	// Every post hook ran, after the volumes ended: failed by a hook, by the node-agent, or not at all.
	results := map[string]v1.HookResult{}
	for _, h := range b.Status.Hooks {
		results[h.Namespace+"/"+h.Pod+"/"+string(h.Phase)] = h
	}
	for _, pod := range []string{"hooks-ok/marker", "hooks/failing", "hooks/continue", "hooks/hang", "hooks/volfail"} {
		for _, phase := range []string{"pre", "post"} {
			if _, ok := results[pod+"/"+phase]; !ok {
				t.Errorf("no %s hook outcome of pod %s in the status: %+v", phase, pod, b.Status.Hooks)
			}
		}
		if post := results[pod+"/post"]; post.State != v1.HookSucceeded || post.ExitCode == nil || *post.ExitCode != 0 {
			t.Errorf("post hook of %s: %+v", pod, post)
		}
	}
	if hang := results["hooks/hang/pre"]; hang.State != v1.HookFailed || hang.Error != "timed out after 3s" || hang.Duration == nil || hang.Duration.Duration > 10*time.Second {
		t.Errorf("hanging pre hook: %+v", hang)
	}
	if f := results["hooks/failing/pre"]; f.ExitCode == nil || *f.ExitCode != 3 || !strings.Contains(f.Stderr, "cannot flush") || f.Container != "app" {
		t.Errorf("failing pre hook: %+v", f)
	}
	for _, pod := range []string{"failing", "continue", "hang"} {
		if data, err := os.ReadFile(filepath.Join(c.volumeDir(t, "hooks", pod, "data"), "post-ran")); err != nil || string(data) != "thawed\n" {
			t.Errorf("post hook of hooks/%s left no post-ran in the volume: %q, %v", pod, data, err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.volumeDir(t, "hooks", "volfail", "scratch"), "post-ran")); err != nil {
		t.Errorf("post hook of hooks/volfail did not run after its volume failed: %v", err)
	}

	// The marker is in the snapshot, and not in the live volume after the post hook.
	live := c.volumeDir(t, "hooks-ok", "marker", "data")
	if _, err := os.Stat(filepath.Join(live, "marker")); !os.IsNotExist(err) {
		t.Errorf("the post hook did not remove the live volume's marker: %v", err)
	}
	restored := filepath.Join(t.TempDir(), "marker")
	c.restoreSnapshot(t, "hooks-ok", pvbs["hooks-ok/marker/data"].Status.SnapshotID, restored)
	if data, err := os.ReadFile(filepath.Join(restored, "marker")); err != nil || string(data) != "frozen\n" {
		t.Errorf("the snapshot lacks the pre hook's marker: %q, %v", data, err)
	}

	// Hooks are in the Backup's events and in describe.
	res := c.cli(time.Minute, "backup", "describe", "hooked")
	if res.err != nil || !strings.Contains(res.stdout, "Hooks (10):") || !strings.Contains(res.stdout, "timed out after 3s") {
		t.Errorf("describe does not list the hooks: %s", res)
	}
	c.waitFor(t, "hook events of backup hooked", 30*time.Second, func() (bool, error) {
		evs, err := c.cs.EventsV1().Events(installNamespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		reasons := map[string]int{}
		for _, e := range evs.Items {
			if e.Regarding.Name == "hooked" {
				reasons[e.Reason]++
			}
		}
		return reasons["HookSucceeded"] > 0 && reasons["HookFailed"] > 0, nil
	})

	testRestoreInitHook(t, c)
	testHooksAcrossControllerRestart(t, c)
}

// testHooksAcrossControllerRestart kills the controller while a pre hook runs: the restarted controller does
// not run that pre hook again (its outcome is unknown, so the volume fails under on-error Fail) and still runs
// the post hook.
func testHooksAcrossControllerRestart(t *testing.T, c *cluster) {
	ctx := context.Background()
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hooks-restart"}})
	mustCreate(t, c.cl, testPod("hooks-restart", "slow", nodeA,
		hookAnnotations(`["sh","-c","echo ran >> pre-count; sleep 4"]`, `["sh","-c","echo ran >> post-count"]`), emptyDirVolume("data")))
	c.waitPodsRunning(t, "hooks-restart", 1)
	c.createBackup(t, "restarted", v1.BackupSpec{IncludedNamespaces: []string{"hooks-restart"}})
	c.waitFor(t, "the pre hook to run", time.Minute, func() (bool, error) {
		var b v1.Backup
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: "restarted"}, &b); err != nil {
			return false, err
		}
		return len(b.Status.Hooks) == 1 && b.Status.Hooks[0].State == v1.HookRunning, nil
	})
	c.controller.kill9(t)
	c.controller.restart(t)
	b := c.waitBackup(t, "restarted", 2*time.Minute)
	dir := c.volumeDir(t, "hooks-restart", "slow", "data")
	for name, want := range map[string]string{"pre-count": "ran\n", "post-count": "ran\n"} {
		if data, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(data) != want {
			t.Errorf("%s: %q (%v), want %q: each hook once", name, data, err, want)
		}
	}
	pvb := c.volumeBackups(t, "restarted")["hooks-restart/slow/data"]
	if b.Status.Phase != v1.PhaseFailed || pvb.Status.Phase != v1.VolumePhaseFailed || !strings.Contains(pvb.Status.Message, "controller restarted") {
		t.Errorf("backup %s, volume %s: %s; hooks %+v", b.Status.Phase, pvb.Status.Phase, pvb.Status.Message, b.Status.Hooks)
	}
}

// testRestoreInitHook restores the marker pod with an init hook that checks the restored marker: it runs
// after restore-wait, in the restored data.
func testRestoreInitHook(t *testing.T, c *cluster) {
	ctx := context.Background()
	rs := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Namespace: installNamespace, Name: "hooked-restore"}, Spec: v1.RestoreSpec{
		BackupName: "hooked", IncludedNamespaces: []string{"hooks-ok"}, NamespaceMapping: map[string]string{"hooks-ok": "hooks-ok-copy"},
		Hooks: v1.RestoreHooks{InitContainers: []v1.RestoreInitHook{
			{Name: "check-marker", Image: localInitImage, Command: []string{"sh", "-c", "cat marker && test ! -e .straddle"}},
			{Name: "elsewhere", Image: localInitImage, Command: []string{"false"}, Namespaces: []string{"other"}},
		}},
	}}
	mustCreate(t, c.cl, rs)
	c.waitFor(t, "restore hooked-restore to end", 3*time.Minute, func() (bool, error) {
		if err := c.cl.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
			return false, err
		}
		return terminalBackup(rs.Status.Phase), nil
	})
	if rs.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("restore %s: %+v", rs.Status.Phase, rs.Status)
	}
	pods := c.waitPodsRunning(t, "hooks-ok-copy", 1)
	var names []string
	for _, ic := range pods[0].Spec.InitContainers {
		names = append(names, ic.Name)
	}
	if !slices.Equal(names, []string{restoreWait, "check-marker"}) {
		t.Errorf("restored pod's init containers %v, want restore-wait then check-marker", names)
	}
	run := c.kubelet.Helper(string(pods[0].UID))
	if run == nil || len(run.Inits) != 1 || run.Inits[0].Name != "check-marker" || run.Inits[0].ExitCode != 0 || run.Inits[0].Output != "frozen\n" {
		t.Errorf("the init hook did not run after restore-wait on the restored data: %+v", run)
	}
}
