//go:build integration

package nodeagent

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// A node-agent that comes back to work it left InProgress resumes it unless the pod or the volume went while
// it was down: then the PodVolumeBackup fails saying which.
func TestResumedBackupOfAGonePodOrVolumeFailsWithWhy(t *testing.T) {
	c := startCluster(t)
	hostPods := t.TempDir()
	c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vault"}})
	c.location(t, "fs", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: t.TempDir()}}, "vault")
	deleted := c.pod(t, "vault", "big", "node-g", emptyDirVolume("blob"))
	kept := c.pod(t, "vault", "small", "node-g", emptyDirVolume("data"))
	// As a dead agent left them: InProgress, the folders gone (the pod deleted, the volume unmounted).
	leftInProgress := func(name string, pod *corev1.Pod, volume string) *v1.PodVolumeBackup {
		p := c.pvb(t, name, "node-g", "fs", pod, volume)
		p.Status.Phase = v1.VolumePhaseInProgress
		if err := c.cl.Status().Update(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gonePod := leftInProgress("big-blob", deleted, "blob")
	goneVolume := leftInProgress("small-data", kept, "data")
	if err := c.cl.Delete(context.Background(), deleted); err != nil {
		t.Fatal(err)
	}

	c.startAgent(t, "node-g", hostPods, 2, nil)
	if p := c.waitPhase(t, gonePod.Name, v1.VolumePhaseFailed); p.Status.Message != "pod vault/big was deleted" {
		t.Errorf("PodVolumeBackup of a deleted pod: message %q, want %q", p.Status.Message, "pod vault/big was deleted")
	}
	p := c.waitPhase(t, goneVolume.Name, v1.VolumePhaseFailed)
	if want := "volume data of pod vault/small is gone: "; len(p.Status.Message) < len(want) || p.Status.Message[:len(want)] != want {
		t.Errorf("PodVolumeBackup of a volume gone: message %q, want it to start with %q", p.Status.Message, want)
	}
	c.waitEvent(t, gonePod, ReasonFailed, "pod vault/big was deleted")
}
