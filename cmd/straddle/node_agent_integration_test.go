//go:build integration

package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
)

// The real `straddle node-agent` command takes its node's PodVolumeBackups and backs them up, and only those.
func TestNodeAgentCommandBacksUpItsNodesVolumes(t *testing.T) {
	kc, cl := controlPlane(t)
	ctx := context.Background()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "straddle"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "pw", Namespace: "straddle"}, Data: map[string][]byte{"password": []byte("cmd-test")}},
	} {
		if err := cl.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "straddle"}, Spec: v1.BackupStorageLocationSpec{
		Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: t.TempDir()},
		RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "pw"}, Key: "password"}}}
	if err := cl.Create(ctx, loc); err != nil {
		t.Fatal(err)
	}
	if _, err := bsl.OpenRepository(ctx, cl, loc, "app", true); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web-0"}, Spec: corev1.PodSpec{NodeName: "node-a",
		Volumes:    []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	if err := cl.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	hostPods := t.TempDir()
	dir := filepath.Join(hostPods, string(pod.UID), "volumes", "kubernetes.io~empty-dir", "scratch")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	runServer(t, "node-agent", "--kubeconfig", kc, "--node-name", "node-a", "--host-pods-dir", hostPods, "--namespace", "straddle", "--concurrency", "1")

	pvb := func(name, node string) *v1.PodVolumeBackup {
		p := &v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle", Labels: map[string]string{v1.NodeLabel: node}},
			Spec: v1.PodVolumeBackupSpec{Node: node, Pod: v1.PodReference{Namespace: "app", Name: "web-0"}, Volume: "scratch", StorageLocation: "default"}}
		if err := cl.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mine, theirs := pvb("mine", "node-a"), pvb("theirs", "node-b")
	var got v1.PodVolumeBackup
	waitFor(t, "the agent's PodVolumeBackup to complete", func() bool {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(mine), &got); err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase == v1.VolumePhaseFailed {
			t.Fatalf("failed: %s", got.Status.Message)
		}
		return got.Status.Phase == v1.VolumePhaseCompleted
	})
	if got.Status.SnapshotID == "" || got.Status.Stats.FilesNew != 1 || got.Status.Progress.BytesDone != 5 {
		t.Errorf("status %+v", got.Status)
	}
	// The repository holds it, as a user on a laptop would list it.
	t.Setenv("STRADDLE_PASSWORD", "cmd-test")
	out := mustStraddle(t, "repo", "snapshots", "--repo", filepath.Join(loc.Spec.Filesystem.Path, bsl.RepositoryPath("app")))
	if !strings.Contains(out, got.Status.SnapshotID[:8]) || !strings.Contains(out, "app/web-0") {
		t.Errorf("repo snapshots:\n%s", out)
	}
	if err := cl.Get(ctx, client.ObjectKeyFromObject(theirs), &got); err != nil || got.Status.Phase != "" {
		t.Errorf("node-b's PodVolumeBackup: phase %q, %v", got.Status.Phase, err)
	}

	// The same agent restores that snapshot into a new pod's volume, whose folder the kubelet made.
	if err := cl.Get(ctx, client.ObjectKeyFromObject(mine), &got); err != nil {
		t.Fatal(err)
	}
	snapID := got.Status.SnapshotID
	rst := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "r1", Namespace: "straddle"}, Spec: v1.RestoreSpec{BackupName: "b1"}}
	newPod := pod.DeepCopy()
	newPod.ObjectMeta = metav1.ObjectMeta{Namespace: "app", Name: "web-0-restored"}
	for _, obj := range []client.Object{rst, newPod} {
		if err := cl.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	target := filepath.Join(hostPods, string(newPod.UID), "volumes", "kubernetes.io~empty-dir", "scratch")
	if err := os.MkdirAll(target, 0o750); err != nil {
		t.Fatal(err)
	}
	pvr := &v1.PodVolumeRestore{ObjectMeta: metav1.ObjectMeta{Name: "r1-scratch", Namespace: "straddle",
		Labels:          map[string]string{v1.NodeLabel: "node-a", v1.RestoreLabel: "r1"},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Restore", Name: "r1", UID: rst.UID, Controller: ptr.To(true)}}},
		Spec: v1.PodVolumeRestoreSpec{Node: "node-a", Pod: v1.PodReference{Namespace: "app", Name: newPod.Name, UID: string(newPod.UID)},
			Volume: "scratch", StorageLocation: "default", SnapshotID: snapID, SourceNamespace: "app"}}
	if err := cl.Create(ctx, pvr); err != nil {
		t.Fatal(err)
	}
	var restored v1.PodVolumeRestore
	waitFor(t, "the agent's PodVolumeRestore to complete", func() bool {
		if err := cl.Get(ctx, client.ObjectKeyFromObject(pvr), &restored); err != nil {
			t.Fatal(err)
		}
		if restored.Status.Phase == v1.VolumePhaseFailed {
			t.Fatalf("restore failed: %s", restored.Status.Message)
		}
		return restored.Status.Phase == v1.VolumePhaseCompleted
	})
	if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "hello" {
		t.Errorf("restored file: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(target, ".straddle", string(rst.UID))); err != nil {
		t.Errorf("no marker: %v", err)
	}
}
