//go:build integration

package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// TestMarkerFolderRemovedOnceTheAppStarts: a restore helper that could not remove the marker folder (a
// volume root of root's, mode 0755, and the helper unprivileged) leaves it; the node-agent removes it once
// the pod's restore-wait has terminated with success, and not before.
func TestMarkerFolderRemovedOnceTheAppStarts(t *testing.T) {
	c := startCluster(t)
	c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	loc := c.location(t, "fs", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: t.TempDir()}}, "shop")
	src, snapID := c.snapshotOf(t, loc, "shop", map[string]string{"index.html": "<h1>shop</h1>"}, nil)
	hostPods := t.TempDir()
	c.startRestoreAgent(t, "node-a", hostPods)

	rst := c.restoreObject(t, "r-clean")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", Labels: map[string]string{v1.RestoreLabel: rst.Name}},
		Spec: corev1.PodSpec{NodeName: "node-a", Volumes: []corev1.Volume{emptyDirVolume("data")},
			InitContainers: []corev1.Container{{Name: restoreWaitContainer, Image: "helper:1"}}, Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	c.create(t, pod)
	vol := volumeFolder(t, hostPods, pod, "kubernetes.io~empty-dir/data", nil)
	if err := os.Chmod(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	pvr := c.pvr(t, rst, "node-a", "fs", pod, "data", snapID, "shop")
	c.waitPVR(t, pvr.Name, v1.VolumePhaseCompleted)
	sameTree(t, src, vol)
	marker := filepath.Join(vol, MarkerDir, string(rst.UID))
	if fi, err := os.Stat(marker); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("marker %s: %v, want a file every user can read", marker, err)
	}

	setInit := func(state corev1.ContainerState) {
		t.Helper()
		var p corev1.Pod
		if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(pod), &p); err != nil {
			t.Fatal(err)
		}
		p.Status.Phase = corev1.PodPending
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: restoreWaitContainer, Image: "helper:1", State: state}}
		if err := c.cl.Status().Update(context.Background(), &p); err != nil {
			t.Fatal(err)
		}
	}
	// The helper still runs (it has yet to see the marker): the folder stays.
	setInit(corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}})
	time.Sleep(2 * time.Second)
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the marker went while restore-wait still ran: %v", err)
	}
	// It exited 0, having emptied the world-writable folder but unable to remove it from the root's volume
	// root: the app starts, and the folder goes.
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	setInit(corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", FinishedAt: metav1.Now()}})
	waitFor(t, "the marker folder to be removed", 60*time.Second, func() bool {
		_, err := os.Lstat(filepath.Join(vol, MarkerDir))
		return os.IsNotExist(err)
	})
	sameTree(t, src, vol)
}
