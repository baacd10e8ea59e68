//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

const (
	shopNS = "shop"
	// restoringLabel marks namespaces a Restore restores into; the restore webhook is scoped to them.
	restoringLabel = "straddle.io/restoring"
)

// shopFill writes db's rows into volume data.
func shopFill(_ *corev1.Pod, volume, dir string) error {
	if volume != "data" {
		return nil
	}
	if err := writeSmallFiles(dir, 400, 71); err != nil {
		return err
	}
	return writeMixed(dir, 71)
}

// TestRestoreWebhook is the restore webhook's whole-system test: a StatefulSet's pod is backed up, its
// namespace deleted and restored; while the restored pod waits in restore-wait (the node-agents are down,
// so its data cannot come yet) it is deleted, and the test, playing the StatefulSet controller, creates
// db-0 again from the restored StatefulSet's template. The controller's webhook gives the new pod
// restore-wait; the data arrives in the new pod's volume, byte for byte; its helper exits only after; the
// Restore completes without counting the old pod's PodVolumeRestore.
func TestRestoreWebhook(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: shopFill})
	ctx := context.Background()
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shopNS}})
	labels := map[string]string{"app": "db"}
	noToken := false
	one := int32(1)
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: shopNS}, Spec: appsv1.StatefulSetSpec{
		Replicas: &one, ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{annBackupVolumes: "data"}},
			Spec: corev1.PodSpec{AutomountServiceAccountToken: &noToken, Containers: []corev1.Container{{Name: "app", Image: "registry.example/db:1",
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/mnt/data"}}}}}},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}}}},
	}}
	mustCreate(t, c.cl, sts)
	c.createClaim(t, shopNS, "data-db-0", "pv-shop-db", "1Gi")
	db := testPod(shopNS, "db-0", nodeA, map[string]string{annBackupVolumes: "data"}, claimVolume("data", "data-db-0"))
	db.Labels = labels
	db.OwnerReferences = []metav1.OwnerReference{ownerRef("apps/v1", "StatefulSet", sts.Name, sts.UID)}
	mustCreate(t, c.cl, db)
	c.waitPodsRunning(t, shopNS, 1)
	orig := filepath.Join(c.dir, "original-data")
	if out, err := exec.Command("cp", "-a", c.volumeDir(t, shopNS, "db-0", "data"), orig).CombinedOutput(); err != nil {
		t.Fatalf("copy the original volume: %v\n%s", err, out)
	}
	if res := c.cli(backupTimeout, "backup", "create", "shop-1", "--include-namespaces", shopNS, "--wait"); res.err != nil {
		t.Fatalf("backup create --wait: %s", res)
	}
	c.deleteNamespace(t, shopNS)

	// Without node-agents the restored pod's data cannot come: it waits in restore-wait.
	for _, node := range []string{nodeA, nodeB} {
		c.agents[node].kill9(t)
	}
	if res := c.cli(time.Minute, "restore", "create", "shop-back", "--from-backup", "shop-1"); res.err != nil {
		t.Fatalf("restore create: %s", res)
	}
	var old corev1.Pod
	c.waitFor(t, "the restored pod to wait in restore-wait, with its PodVolumeRestore", time.Minute, func() (bool, error) {
		err := c.cl.Get(ctx, client.ObjectKey{Namespace: shopNS, Name: "db-0"}, &old)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil || c.kubelet.Helper(string(old.UID)) == nil {
			return false, err
		}
		var pvrs v1.PodVolumeRestoreList
		err = c.cl.List(ctx, &pvrs, client.InNamespace(installNamespace), client.MatchingLabels{v1.RestoreLabel: "shop-back"})
		return err == nil && len(pvrs.Items) == 1, err
	})
	var ns corev1.Namespace
	if err := c.cl.Get(ctx, client.ObjectKey{Name: shopNS}, &ns); err != nil || ns.Labels[restoringLabel] != "shop-back" {
		t.Fatalf("namespace %s labels %v (%v), want %s=shop-back while the restore runs", shopNS, ns.Labels, err, restoringLabel)
	}

	// The pod goes before its data came; the StatefulSet controller (the test) makes db-0 again.
	if err := c.cl.Delete(ctx, &old); err != nil {
		t.Fatal(err)
	}
	c.waitFor(t, "the old pod gone", time.Minute, func() (bool, error) {
		err := c.cl.Get(ctx, client.ObjectKey{Namespace: shopNS, Name: "db-0"}, &corev1.Pod{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	var restoredSts appsv1.StatefulSet
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: shopNS, Name: "db"}, &restoredSts); err != nil {
		t.Fatalf("restored StatefulSet: %v", err)
	}
	replacement := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: shopNS, Name: "db-0", Labels: maps.Clone(restoredSts.Spec.Template.Labels),
			Annotations:     maps.Clone(restoredSts.Spec.Template.Annotations),
			OwnerReferences: []metav1.OwnerReference{ownerRef("apps/v1", "StatefulSet", restoredSts.Name, restoredSts.UID)}},
		Spec: *restoredSts.Spec.Template.Spec.DeepCopy(),
	}
	replacement.Labels["statefulset.kubernetes.io/pod-name"] = "db-0"
	replacement.Spec.Hostname, replacement.Spec.Subdomain = "db-0", restoredSts.Spec.ServiceName
	replacement.Spec.Volumes = append(replacement.Spec.Volumes, claimVolume("data", "data-db-0"))
	mustCreate(t, c.cl, replacement)
	var r v1.Restore
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: "shop-back"}, &r); err != nil {
		t.Fatal(err)
	}
	if r.Status.Phase != v1.PhaseInProgress {
		t.Fatalf("the restore is %s with its pod's replacement just made: %+v", r.Status.Phase, r.Status)
	}
	if len(replacement.Spec.InitContainers) != 1 || replacement.Spec.InitContainers[0].Name != restoreWait ||
		!slices.Equal(replacement.Spec.InitContainers[0].Args, []string{"--restore-uid", string(r.UID)}) {
		t.Fatalf("the new pod's init containers %+v, want restore-wait for restore %s", replacement.Spec.InitContainers, r.UID)
	}
	var helperCM corev1.ConfigMap
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: "straddle-restore-helper"}, &helperCM); err != nil {
		t.Fatal(err)
	}
	if img := replacement.Spec.InitContainers[0].Image; img != helperCM.Data["image"] {
		t.Errorf("the new pod's restore-wait image %q, want the ConfigMap's %q", img, helperCM.Data["image"])
	}
	if m := replacement.Spec.InitContainers[0].VolumeMounts; len(m) != 1 || m[0].Name != "data" || m[0].MountPath != restoresMount+"data" {
		t.Errorf("restore-wait mounts %+v, want data at %sdata", m, restoresMount)
	}
	var rv struct {
		RestoreUID string            `json:"restoreUID"`
		Volumes    map[string]string `json:"volumes"`
	}
	if err := json.Unmarshal([]byte(replacement.Annotations["straddle.io/restore-volumes"]), &rv); err != nil || rv.RestoreUID != string(r.UID) ||
		len(rv.Volumes) != 1 || replacement.Labels[v1.RestoreLabel] != "shop-back" {
		t.Errorf("the new pod's label %q, annotation %+v (%v)", replacement.Labels[v1.RestoreLabel], rv, err)
	}

	for _, node := range []string{nodeA, nodeB} {
		c.agents[node].restart(t)
	}
	c.waitFor(t, "the restore to end", restoreTimeout, func() (bool, error) {
		err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: "shop-back"}, &r)
		return err == nil && r.Status.CompletionTimestamp != nil, err
	})
	if r.Status.Phase != v1.PhaseCompleted || r.Status.VolumesTotal != 1 || r.Status.VolumesCompleted != 1 || r.Status.VolumesFailed != 0 {
		t.Errorf("Restore: phase %q, volumes %d (completed %d, failed %d), errors %q; want Completed with its 1 volume",
			r.Status.Phase, r.Status.VolumesTotal, r.Status.VolumesCompleted, r.Status.VolumesFailed, r.Status.Errors)
	}
	pods := c.waitPodsRunning(t, shopNS, 1)
	if pods[0].UID != replacement.UID {
		t.Fatalf("running pod %s, want the new pod %s", pods[0].UID, replacement.UID)
	}
	var pvrs v1.PodVolumeRestoreList
	if err := c.cl.List(ctx, &pvrs, client.InNamespace(installNamespace), client.MatchingLabels{v1.RestoreLabel: "shop-back"}); err != nil {
		t.Fatal(err)
	}
	completed := 0
	for _, p := range pvrs.Items {
		if p.Spec.Pod.UID == string(replacement.UID) && p.Status.Phase == v1.VolumePhaseCompleted {
			completed++
		}
	}
	if completed != 1 {
		t.Errorf("PodVolumeRestores %d, %d of the new pod Completed, want 1", len(pvrs.Items), completed)
	}
	run := c.kubelet.Helper(string(replacement.UID))
	wantList, err := listTree(orig)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case run == nil:
		t.Error("the simulator never ran the new pod's restore-wait")
	case run.ExitCode != 0:
		t.Errorf("the new pod's restore-wait exited %d: %s", run.ExitCode, run.Output)
	case !maps.Equal(run.Listing["data"], wantList):
		t.Errorf("when the new pod's restore-wait exited, volume data held %d entries, not the original's %d (or they differed): %s",
			len(run.Listing["data"]), len(wantList), listingDiff(wantList, run.Listing["data"]))
	}
	got := c.volumeDir(t, shopNS, "db-0", "data")
	if err := compareTrees(orig, got); err != nil {
		t.Errorf("the new pod's volume: %v", err)
	}
	if err := compareTimes(orig, got); err != nil {
		t.Errorf("the new pod's volume: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(got, ".straddle")); !os.IsNotExist(err) {
		t.Errorf("the new pod's volume still has .straddle: %v", err)
	}
	if err := c.cl.Get(ctx, client.ObjectKey{Name: shopNS}, &ns); err != nil || ns.Labels[restoringLabel] != "" {
		t.Errorf("namespace %s labels %v (%v) after the restore, want no %s", shopNS, ns.Labels, err, restoringLabel)
	}
}
