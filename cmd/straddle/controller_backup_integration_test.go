//go:build integration

package main

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// The controller command runs the Backup reconciler with its flags: default-all volumes and the cap on
// volumes in flight.
func TestControllerRunsBackupsWithItsFlags(t *testing.T) {
	kc, cl := controlPlane(t)
	ctx := context.Background()
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "straddle"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "straddle-repository-password"}, Data: map[string][]byte{"password": []byte("pw")}},
		&v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "default"}, Spec: v1.BackupStorageLocationSpec{
			Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: t.TempDir()}, Default: true,
			RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "straddle-repository-password"}, Key: "password"}}},
	} {
		if err := cl.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "web"}, Spec: corev1.PodSpec{NodeName: "node-a",
		Containers: []corev1.Container{{Name: "c", Image: "busybox"}},
		Volumes: []corev1.Volume{{Name: "a", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "b", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
	if err := cl.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	if err := cl.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	runServer(t, "controller", "--kubeconfig", kc, "--namespace", "straddle", "--default-volumes-to-fs-backup", "--max-volumes-in-flight", "1")
	if err := cl.Create(ctx, &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: "straddle", Name: "b1"}, Spec: v1.BackupSpec{IncludedNamespaces: []string{"app"}}}); err != nil {
		t.Fatal(err)
	}
	var b v1.Backup
	waitFor(t, "backup in progress with two volumes", func() bool {
		return cl.Get(ctx, client.ObjectKey{Namespace: "straddle", Name: "b1"}, &b) == nil && b.Status.Phase == v1.PhaseInProgress && b.Status.VolumesTotal == 2
	})
	var pvbs v1.PodVolumeBackupList
	if err := cl.List(ctx, &pvbs, client.InNamespace("straddle"), client.MatchingLabels{v1.BackupLabel: "b1"}); err != nil {
		t.Fatal(err)
	}
	if len(pvbs.Items) != 1 {
		t.Fatalf("%d PodVolumeBackups with --max-volumes-in-flight 1", len(pvbs.Items))
	}
}
