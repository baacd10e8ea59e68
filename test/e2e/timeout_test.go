//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// Timeout test namespace: pod "a" on node-a, pod "b" on node-b, one data volume each.
const (
	timeoutNS      = "bounded"
	timeoutSetting = "20s"
	timedOut       = "timed out after 20s"
)

// TestTimeoutsKeepWhatFinished is issue 12's bounded-wait test. With node-b's agent down, a Backup with a 20 s
// timeout ends PartiallyFailed: pod a's volume Completed and restorable, pod b's Failed "timed out after
// 20s". A Restore with a 20 s timeout of an earlier full backup does the same: a's volume comes back byte for
// byte, b's fails. When node-b's agent comes back it leaves both failed volumes as the controller ended them.
func TestTimeoutsKeepWhatFinished(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: fixtures{
		timeoutNS + "/a/data": func(dir string) error { return writeMixed(dir, 31) },
		timeoutNS + "/b/data": func(dir string) error { return writeSmallFiles(dir, 50, 32) },
	}.fill})
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: timeoutNS}})
	for pod, node := range map[string]string{"a": nodeA, "b": nodeB} {
		mustCreate(t, c.cl, testPod(timeoutNS, pod, node, map[string]string{annBackupVolumes: "data"}, emptyDirVolume("data")))
	}
	c.waitPodsRunning(t, timeoutNS, 2)
	watch := c.watchPhases(t)
	if res := c.cli(backupTimeout, "backup", "create", "full", "--include-namespaces", timeoutNS, "--wait"); res.err != nil {
		t.Fatalf("backup create full --wait: %s", res)
	}

	c.agents[nodeB].kill9(t)
	start := time.Now()
	if res := c.cli(time.Minute, "backup", "create", "bounded", "--include-namespaces", timeoutNS, "--timeout", timeoutSetting); res.err != nil {
		t.Fatalf("backup create --timeout: %s", res)
	}
	if res := c.cli(time.Minute, "restore", "create", "bounded-restore", "--from-backup", "full", "--namespace-mappings", timeoutNS+":bounded-copy",
		"--timeout", timeoutSetting); res.err != nil {
		t.Fatalf("restore create --timeout: %s", res)
	}

	t.Run("the backup keeps the finished volume and fails the other", func(t *testing.T) {
		b := c.waitBackup(t, "bounded", 2*time.Minute)
		took := b.Status.CompletionTimestamp.Sub(b.Status.StartTimestamp.Time)
		t.Logf("Backup bounded ended %s %.1fs after its start (%.1fs after create)", b.Status.Phase, took.Seconds(), time.Since(start).Seconds())
		if b.Status.Phase != v1.PhasePartiallyFailed || b.Status.VolumesCompleted != 1 || b.Status.VolumesFailed != 1 {
			t.Errorf("Backup bounded: %s, %d completed, %d failed, errors %q; want PartiallyFailed, 1, 1", b.Status.Phase, b.Status.VolumesCompleted, b.Status.VolumesFailed, b.Status.Errors)
		}
		if took < 20*time.Second || took > 50*time.Second {
			t.Errorf("Backup bounded ended %s after its start; want soon after its 20s timeout", took)
		}
		pvbs := c.volumeBackups(t, "bounded")
		if p := pvbs[timeoutNS+"/b/data"]; p.Status.Phase != v1.VolumePhaseFailed || p.Status.Message != timedOut {
			t.Errorf("node-b's volume: %s %q; want Failed %q", p.Status.Phase, p.Status.Message, timedOut)
		}
		a := pvbs[timeoutNS+"/a/data"]
		if a.Status.Phase != v1.VolumePhaseCompleted {
			t.Fatalf("node-a's volume: %s %q; want Completed", a.Status.Phase, a.Status.Message)
		}
		c.checkRestores(t, timeoutNS+"/a/data", a)
		if _, ok := c.bucketObjects(t, "backups/bounded/")["backups/bounded/podvolumebackups.json"]; !ok {
			t.Error("the timed-out backup's podvolumebackups.json is not in the bucket")
		}
		res := c.cli(time.Minute, "backup", "describe", "bounded")
		if res.err != nil || !strings.Contains(res.stdout, timedOut) || !strings.Contains(res.stdout, "Timeout:") {
			t.Errorf("backup describe does not show the timeout: %s", res)
		}
		if !c.hasEvent(t, "Backup", "bounded", "TimedOut", timedOut) {
			t.Errorf("no TimedOut event on Backup bounded saying %q", timedOut)
		}
	})

	t.Run("the timed-out backup restores what finished", func(t *testing.T) {
		if res := c.cli(restoreTimeout, "restore", "create", "from-bounded", "--from-backup", "bounded", "--namespace-mappings", timeoutNS+":from-bounded"); res.err != nil {
			t.Fatalf("restore create: %s", res)
		}
		r := c.waitRestore(t, "from-bounded", restoreTimeout)
		pvrs := c.volumeRestores(t, "from-bounded")
		if p, ok := pvrs["from-bounded/a/data"]; !ok || p.Status.Phase != v1.VolumePhaseCompleted {
			t.Fatalf("Restore from-bounded (%s, errors %q): pod a's volume %+v; want Completed", r.Status.Phase, r.Status.Errors, p.Status)
		}
		// Running: restore-wait saw the marker and removed it.
		c.waitPodsRunning(t, "from-bounded", 2)
		if err := compareTrees(c.volumeDir(t, timeoutNS, "a", "data"), c.volumeDir(t, "from-bounded", "a", "data")); err != nil {
			t.Errorf("the timed-out backup's finished volume does not restore: %v", err)
		}
	})

	t.Run("the restore keeps the restored volume and fails the other", func(t *testing.T) {
		r := c.waitRestore(t, "bounded-restore", 2*time.Minute)
		if r.Status.Phase != v1.PhasePartiallyFailed || r.Status.VolumesCompleted != 1 || r.Status.VolumesFailed != 1 {
			t.Errorf("Restore bounded-restore: %s, %d completed, %d failed, errors %q; want PartiallyFailed, 1, 1",
				r.Status.Phase, r.Status.VolumesCompleted, r.Status.VolumesFailed, r.Status.Errors)
		}
		pvrs := c.volumeRestores(t, "bounded-restore")
		if p := pvrs["bounded-copy/b/data"]; p.Status.Phase != v1.VolumePhaseFailed || p.Status.Message != timedOut {
			t.Errorf("node-b's volume: %s %q; want Failed %q", p.Status.Phase, p.Status.Message, timedOut)
		}
		if p := pvrs["bounded-copy/a/data"]; p.Status.Phase != v1.VolumePhaseCompleted {
			t.Errorf("node-a's volume: %s %q; want Completed", p.Status.Phase, p.Status.Message)
		}
		c.waitFor(t, "pod bounded-copy/a to run (restore-wait done)", time.Minute, func() (bool, error) {
			var pod corev1.Pod
			err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: "bounded-copy", Name: "a"}, &pod)
			return err == nil && pod.Status.Phase == corev1.PodRunning, err
		})
		if err := compareTrees(c.volumeDir(t, timeoutNS, "a", "data"), c.volumeDir(t, "bounded-copy", "a", "data")); err != nil {
			t.Errorf("the restored volume differs: %v", err)
		}
		res := c.cli(time.Minute, "restore", "describe", "bounded-restore")
		if res.err != nil || !strings.Contains(res.stdout, timedOut) {
			t.Errorf("restore describe does not show the timeout: %s", res)
		}
	})

	t.Run("a node-agent coming back leaves what the controller ended", func(t *testing.T) {
		c.agents[nodeB].restart(t)
		// Several of the agent's progress intervals: time to take, run and overwrite, were it to.
		time.Sleep(8 * time.Second)
		if p := c.volumeBackups(t, "bounded")[timeoutNS+"/b/data"]; p.Status.Phase != v1.VolumePhaseFailed || p.Status.Message != timedOut {
			t.Errorf("after node-b's agent restarted, its PodVolumeBackup is %s %q; want Failed %q", p.Status.Phase, p.Status.Message, timedOut)
		}
		if p := c.volumeRestores(t, "bounded-restore")["bounded-copy/b/data"]; p.Status.Phase != v1.VolumePhaseFailed || p.Status.Message != timedOut {
			t.Errorf("after node-b's agent restarted, its PodVolumeRestore is %s %q; want Failed %q", p.Status.Phase, p.Status.Message, timedOut)
		}
	})
	watch.check(t)
}

// waitRestore waits until the Restore reaches a terminal phase, and returns it.
func (c *cluster) waitRestore(t testing.TB, name string, timeout time.Duration) *v1.Restore {
	t.Helper()
	var r v1.Restore
	c.waitFor(t, "Restore "+name+" to reach a terminal phase", timeout, func() (bool, error) {
		if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: name}, &r); err != nil {
			return false, err
		}
		return terminalBackup(r.Status.Phase), fmt.Errorf("phase %q, %d of %d volumes done", r.Status.Phase, r.Status.VolumesCompleted, r.Status.VolumesTotal)
	})
	return &r
}

// volumeRestores lists the PodVolumeRestores of a Restore, keyed "namespace/pod/volume" of the restored pod.
func (c *cluster) volumeRestores(t testing.TB, restore string) map[string]v1.PodVolumeRestore {
	t.Helper()
	var list v1.PodVolumeRestoreList
	if err := c.cl.List(context.Background(), &list, client.InNamespace(installNamespace), client.MatchingLabels{v1.RestoreLabel: restore}); err != nil {
		t.Fatalf("list the PodVolumeRestores of %s: %v", restore, err)
	}
	out := map[string]v1.PodVolumeRestore{}
	for _, p := range list.Items {
		out[filepath.Join(p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume)] = p
	}
	return out
}

// hasEvent reports whether an event of reason on the install namespace's object kind/name says note.
func (c *cluster) hasEvent(t testing.TB, kind, name, reason, note string) bool {
	t.Helper()
	events, err := c.cs.EventsV1().Events(installNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	for _, e := range events.Items {
		if e.Regarding.Kind == kind && e.Regarding.Name == name && e.Reason == reason && strings.Contains(e.Note, note) {
			return true
		}
	}
	return false
}
