//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/deploy"
)

// The seed scenario of issue 6: namespace voting with a one-replica StatefulSet db whose claim holds a few
// thousand rows, a frontend Deployment with an annotated emptyDir, and a Service.
const (
	votingNS        = "voting"
	votingCopyNS    = "voting-copy"
	votingBackup    = "voting-1"
	offlineRegistry = "registry.local:5000"
	restoreTimeout  = 5 * time.Minute
)

// votingVolumes are the backed-up volumes of the scenario, by pod and volume.
var votingVolumes = []struct{ pod, volume string }{{"db-0", "data"}, {"frontend-6d4cf56db6-x7k2p", "cache"}}

// votingFill writes the original data: rows plus an application-like tree in db's claim, a small tree in
// the frontend's cache, each entry with its own past modification time so a restore that loses times shows.
func votingFill(pod *corev1.Pod, volume, dir string) error {
	var err error
	switch volume {
	case "data":
		if err = writeSmallFiles(dir, 3000, 61); err == nil {
			err = writeMixed(dir, 61)
		}
	case "cache":
		err = writeMixed(dir, 62)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	base := time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)
	i := 0
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		i++
		at := base.Add(time.Duration(i) * 1234567 * time.Microsecond)
		return os.Chtimes(p, at, at)
	})
}

// createVoting creates what the StatefulSet, Deployment and PV controllers would have made of the scenario:
// the workload objects, their pods with ownerReferences, and db's claim with a CSI volume.
func (c *cluster) createVoting(t *testing.T) {
	t.Helper()
	ns := votingNS
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	one := int32(1)
	dbLabels := map[string]string{"app": "db"}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns}, Spec: appsv1.StatefulSetSpec{
		Replicas: &one, ServiceName: "db", Selector: &metav1.LabelSelector{MatchLabels: dbLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: dbLabels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/db:1"}}}}}}
	mustCreate(t, c.cl, sts)
	feLabels := map[string]string{"app": "frontend"}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: feLabels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: feLabels}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "registry.example/frontend:1"}}}}}}
	mustCreate(t, c.cl, dep)
	mustCreate(t, c.cl, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: ns}, Spec: corev1.ServiceSpec{
		Selector: feLabels, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})
	c.createClaim(t, ns, "data-db-0", "pv-voting-db", "1Gi")

	db := testPod(ns, "db-0", nodeA, map[string]string{annBackupVolumes: "data"}, claimVolume("data", "data-db-0"))
	db.Labels = dbLabels
	db.OwnerReferences = []metav1.OwnerReference{ownerRef("apps/v1", "StatefulSet", sts.Name, sts.UID)}
	mustCreate(t, c.cl, db)
	fe := testPod(ns, votingVolumes[1].pod, nodeB, map[string]string{annBackupVolumes: "cache"}, emptyDirVolume("cache"))
	fe.Labels = feLabels
	fe.OwnerReferences = []metav1.OwnerReference{ownerRef("apps/v1", "Deployment", dep.Name, dep.UID)}
	mustCreate(t, c.cl, fe)
	c.waitPodsRunning(t, ns, 2)
}

func ownerRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}
}

// copyVolumes keeps a copy (cp -a: modes, times, links) of the scenario's volumes of namespace ns in dst,
// one folder per volume name.
func (c *cluster) copyVolumes(t *testing.T, ns, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, v := range votingVolumes {
		src := c.volumeDir(t, ns, v.pod, v.volume)
		if out, err := exec.Command("cp", "-a", src, filepath.Join(dst, v.volume)).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v\n%s", src, err, out)
		}
	}
}

// TestRestore is issue 6's whole-system test, on one cluster installed for an offline registry: the seed
// scenario backed up, its namespace deleted and restored; a copy under another namespace while the original
// runs; every restore-wait image from the offline registry; and the same backup restored by a second,
// fresh cluster that shares only the bucket and the repository password.
func TestRestore(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: votingFill, InstallArgs: []string{"--image-registry", offlineRegistry}})
	c.createVoting(t)
	orig := filepath.Join(c.dir, "original")
	c.copyVolumes(t, votingNS, orig)
	if res := c.cli(backupTimeout, "backup", "create", votingBackup, "--include-namespaces", votingNS, "--wait"); res.err != nil {
		t.Fatalf("backup create --wait: %s", res)
	}

	t.Run("namespace deleted and restored", func(t *testing.T) {
		c.deleteNamespace(t, votingNS)
		for _, node := range []string{nodeA, nodeB} {
			if entries, _ := os.ReadDir(c.podsDir(node)); len(entries) > 0 {
				t.Errorf("node %s still has %d pod folders after the namespace went", node, len(entries))
			}
		}
		if res := c.cli(restoreTimeout, "restore", "create", "voting-back", "--from-backup", votingBackup, "--wait"); res.err != nil {
			t.Fatalf("restore create --wait: %s", res)
		}
		c.checkRestored(t, "voting-back", votingNS, orig)
	})

	t.Run("namespace mapped while the original runs", func(t *testing.T) {
		before, err := c.cs.CoreV1().Pods(votingNS).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res := c.cli(restoreTimeout, "restore", "create", "voting-copy", "--from-backup", votingBackup,
			"--namespace-mappings", votingNS+":"+votingCopyNS, "--wait"); res.err != nil {
			t.Fatalf("restore create --namespace-mappings --wait: %s", res)
		}
		c.checkRestored(t, "voting-copy", votingCopyNS, orig)
		after := c.waitPodsRunning(t, votingNS, 2)
		uids := func(pods []corev1.Pod) []string {
			var u []string
			for _, p := range pods {
				u = append(u, p.Name+"/"+string(p.UID))
			}
			slices.Sort(u)
			return u
		}
		if !slices.Equal(uids(before.Items), uids(after)) {
			t.Errorf("the original's pods changed: %v, then %v", uids(before.Items), uids(after))
		}
		for _, v := range votingVolumes {
			if err := compareTrees(filepath.Join(orig, v.volume), c.volumeDir(t, votingNS, v.pod, v.volume)); err != nil {
				t.Errorf("the original's volume %s changed: %v", v.volume, err)
			}
		}
	})

	t.Run("restore-wait images come from the offline registry", func(t *testing.T) {
		var cm corev1.ConfigMap
		if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: "straddle-restore-helper"}, &cm); err != nil {
			t.Fatalf("read the restore helper's ConfigMap: %v", err)
		}
		if !strings.HasPrefix(cm.Data["image"], offlineRegistry+"/") {
			t.Errorf("ConfigMap straddle-restore-helper image %q is not from %s", cm.Data["image"], offlineRegistry)
		}
		n := 0
		for _, ns := range []string{votingNS, votingCopyNS} {
			pods, err := c.cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pods.Items {
				for _, ic := range p.Spec.InitContainers {
					n++
					if !strings.HasPrefix(ic.Image, offlineRegistry+"/") {
						t.Errorf("pod %s/%s init container %s image %q is not from %s", ns, p.Name, ic.Name, ic.Image, offlineRegistry)
					}
				}
			}
		}
		if n != 4 {
			t.Errorf("%d init containers in the restored pods, want 4 (one restore-wait per pod)", n)
		}
	})

	t.Run("a restore-wait that times out keeps its pod Pending", func(t *testing.T) {
		// No Restore: the marker never comes, so the simulator must report the helper's failure as a kubelet
		// would, not start the app.
		const ns = "stuck"
		mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		p := testPod(ns, "app", nodeA, nil, emptyDirVolume("data"))
		p.Spec.InitContainers = []corev1.Container{{Name: restoreWait, Image: "registry.example/helper:1",
			Command: []string{"/straddle-restore-helper"}, Args: []string{"--restore-uid", "6f1f3a52-2f0e-4a8e-9d7c-1b2c3d4e5f60", "--timeout", "2s"},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: restoresMount + "data"}}}}
		mustCreate(t, c.cl, p)
		var got *corev1.Pod
		c.waitFor(t, "restore-wait to fail", time.Minute, func() (bool, error) {
			var err error
			got, err = c.cs.CoreV1().Pods(ns).Get(context.Background(), "app", metav1.GetOptions{})
			if err != nil || len(got.Status.InitContainerStatuses) == 0 {
				return false, err
			}
			term := got.Status.InitContainerStatuses[0].State.Terminated
			return term != nil, nil
		})
		term := got.Status.InitContainerStatuses[0].State.Terminated
		if got.Status.Phase != corev1.PodPending || term.ExitCode == 0 || !strings.Contains(term.Message, "data") {
			t.Errorf("pod after restore-wait timed out: phase %q, exit %d, message %q; want Pending, non-zero, naming the volume",
				got.Status.Phase, term.ExitCode, term.Message)
		}
	})

	t.Run("migration to a fresh cluster", func(t *testing.T) {
		var sec corev1.Secret
		if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: deploy.RepositoryPasswordSecret}, &sec); err != nil {
			t.Fatalf("read the repository password: %v", err)
		}
		pw := filepath.Join(t.TempDir(), "repository-password")
		if err := os.WriteFile(pw, sec.Data[deploy.RepositoryPasswordKey], 0o600); err != nil {
			t.Fatal(err)
		}
		// Without the backup sync (sync_test.go tests it): the restore must find the backup in storage alone.
		c2 := startCluster(t, clusterOptions{Storage: &sharedStorage{minio: c.minio, bucket: c.bucket},
			InstallArgs: []string{"--repository-password-file", pw}, ControllerArgs: []string{"--backup-sync-period", "0"}})
		var backups v1.BackupList
		if err := c2.cl.List(context.Background(), &backups); err != nil || len(backups.Items) > 0 {
			t.Fatalf("the new cluster has Backups (%v): %d", err, len(backups.Items))
		}
		if res := c2.cli(restoreTimeout, "restore", "create", "migrated", "--from-backup", votingBackup, "--wait"); res.err != nil {
			t.Fatalf("restore create --wait in the new cluster: %s", res)
		}
		c2.checkRestored(t, "migrated", votingNS, orig)
	})
}

// checkRestored checks that restore brought the scenario back into namespace ns: the objects, each pod with
// restore-wait first, the helper exited 0 only once every file was in place, the volumes equal orig in
// content, modes and times, the markers gone, the Restore and its PodVolumeRestores Completed.
func (c *cluster) checkRestored(t *testing.T, restore, ns, orig string) {
	t.Helper()
	ctx := context.Background()
	var r v1.Restore
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: restore}, &r); err != nil {
		t.Fatalf("read Restore %s: %v", restore, err)
	}
	if r.Status.Phase != v1.PhaseCompleted || r.Status.VolumesTotal != 2 || r.Status.VolumesCompleted != 2 {
		t.Errorf("Restore %s: phase %q, volumes %d (completed %d, failed %d), errors %q, want Completed with 2 volumes",
			restore, r.Status.Phase, r.Status.VolumesTotal, r.Status.VolumesCompleted, r.Status.VolumesFailed, r.Status.Errors)
	}
	var pvrs v1.PodVolumeRestoreList
	if err := c.cl.List(ctx, &pvrs, client.InNamespace(installNamespace), client.MatchingLabels{v1.RestoreLabel: restore}); err != nil {
		t.Fatal(err)
	}
	if len(pvrs.Items) != 2 {
		t.Errorf("%d PodVolumeRestores of %s, want 2", len(pvrs.Items), restore)
	}
	for _, p := range pvrs.Items {
		if p.Status.Phase != v1.VolumePhaseCompleted || p.Spec.SourceNamespace != votingNS || p.Spec.Pod.Namespace != ns || p.Labels[v1.NodeLabel] != p.Spec.Node {
			t.Errorf("PodVolumeRestore %s: phase %q (%s), pod %+v, source namespace %q, node %q labelled %q",
				p.Name, p.Status.Phase, p.Status.Message, p.Spec.Pod, p.Spec.SourceNamespace, p.Spec.Node, p.Labels[v1.NodeLabel])
		}
	}

	for _, obj := range []client.Object{&corev1.Service{}, &appsv1.Deployment{}, &appsv1.StatefulSet{}, &corev1.PersistentVolumeClaim{}} {
		name := map[string]string{"*v1.Service": "frontend", "*v1.Deployment": "frontend", "*v1.StatefulSet": "db", "*v1.PersistentVolumeClaim": "data-db-0"}[fmt.Sprintf("%T", obj)]
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
			t.Errorf("restored %T %s/%s: %v", obj, ns, name, err)
		}
	}
	var pvc corev1.PersistentVolumeClaim
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "data-db-0"}, &pvc); err == nil &&
		(pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName != "pvc-"+string(pvc.UID)) {
		t.Errorf("restored claim: phase %q, volume %q; want it provisioned anew (pvc-%s) and Bound", pvc.Status.Phase, pvc.Spec.VolumeName, pvc.UID)
	}

	var helperCM corev1.ConfigMap
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: "straddle-restore-helper"}, &helperCM); err != nil {
		t.Errorf("read the restore helper's ConfigMap: %v", err)
	}
	pods := c.waitPodsRunning(t, ns, 2)
	for _, p := range pods {
		if p.Labels[v1.RestoreLabel] != restore {
			t.Errorf("pod %s/%s label %s = %q, want %q", ns, p.Name, v1.RestoreLabel, p.Labels[v1.RestoreLabel], restore)
		}
		if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != restoreWait {
			t.Errorf("pod %s/%s: init containers %v, want %s first", ns, p.Name, p.Spec.InitContainers, restoreWait)
			continue
		}
		rw := p.Spec.InitContainers[0]
		if !slices.Equal(rw.Args, []string{"--restore-uid", string(r.UID)}) {
			t.Errorf("pod %s/%s restore-wait args %q, want --restore-uid %s", ns, p.Name, rw.Args, r.UID)
		}
		if rw.Image != helperCM.Data["image"] || !slices.Equal(rw.Command, []string{"/straddle-restore-helper"}) {
			t.Errorf("pod %s/%s restore-wait runs %q %q, want %q /straddle-restore-helper (ConfigMap straddle-restore-helper)",
				ns, p.Name, rw.Image, rw.Command, helperCM.Data["image"])
		}
		if sc := rw.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 65532 {
			t.Errorf("pod %s/%s restore-wait security context %+v, want runAsUser 65532", ns, p.Name, sc)
		}
	}
	for _, v := range votingVolumes {
		i := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.Name == v.pod })
		if i < 0 {
			t.Errorf("pod %s/%s was not restored", ns, v.pod)
			continue
		}
		want := filepath.Join(orig, v.volume)
		got := c.volumeDir(t, ns, v.pod, v.volume)
		run := c.kubelet.Helper(string(pods[i].UID))
		wantList, err := listTree(want)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case run == nil:
			t.Errorf("pod %s/%s: the simulator never ran restore-wait", ns, v.pod)
		case run.ExitCode != 0:
			t.Errorf("pod %s/%s: restore-wait exited %d: %s", ns, v.pod, run.ExitCode, run.Output)
		case !maps.Equal(run.Listing[v.volume], wantList):
			t.Errorf("pod %s/%s: when restore-wait exited, volume %s held %d entries, not the original's %d (or they differed): %s",
				ns, v.pod, v.volume, len(run.Listing[v.volume]), len(wantList), listingDiff(wantList, run.Listing[v.volume]))
		}
		if err := compareTrees(want, got); err != nil {
			t.Errorf("restored volume %s of %s/%s: %v", v.volume, ns, v.pod, err)
		}
		if err := compareTimes(want, got); err != nil {
			t.Errorf("restored volume %s of %s/%s: %v", v.volume, ns, v.pod, err)
		}
		if _, err := os.Lstat(filepath.Join(got, ".straddle")); !os.IsNotExist(err) {
			t.Errorf("restored volume %s of %s/%s still has .straddle: %v", v.volume, ns, v.pod, err)
		}
	}
}

// listingDiff names a few paths whose entries differ between two listings.
func listingDiff(want, got map[string]string) string {
	var d []string
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			d = append(d, fmt.Sprintf("%s: %q, want %q", k, got[k], want[k]))
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			d = append(d, k+": not in the original")
		}
	}
	return strings.Join(d[:min(len(d), 10)], "; ")
}

// compareTimes reports entries below want (not want itself, whose time the marker's folder changes, nor
// symlinks) whose modification time differs in got.
func compareTimes(want, got string) error {
	var diffs []string
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == want || d.Type()&fs.ModeSymlink != 0 {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(filepath.Join(got, rel))
		if err != nil {
			return err
		}
		if !wi.ModTime().Equal(gi.ModTime()) && len(diffs) < maxDiffs {
			diffs = append(diffs, fmt.Sprintf("%s: modified %s, restored as %s", rel, wi.ModTime().Format(time.RFC3339Nano), gi.ModTime().Format(time.RFC3339Nano)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		return fmt.Errorf("modification times differ:\n  %s", strings.Join(diffs, "\n  "))
	}
	return nil
}

// TestRestoreHelperTimesOut runs the restore helper binary against a volume whose marker never comes: it
// must give up after --timeout with a non-zero exit and a message naming the volume.
func TestRestoreHelperTimesOut(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command(restoreHelperBin, "--restore-uid", "0b7c1e8e-5c6a-4d5e-9b1f-3d2a1c0e9f8a", "--restores-dir", dir, "--timeout", "2s").CombinedOutput()
	took := time.Since(start)
	exit, ok := err.(*exec.ExitError)
	if !ok || exit.ExitCode() == 0 {
		t.Fatalf("restore helper without a marker: %v, want a non-zero exit\n%s", err, out)
	}
	if took < 2*time.Second || took > 20*time.Second {
		t.Errorf("the helper gave up after %v, want about its 2s timeout", took)
	}
	if msg := string(out); !strings.Contains(msg, "data") || !strings.Contains(strings.ToLower(msg), "time") {
		t.Errorf("the helper's message does not say it timed out waiting for volume data:\n%s", msg)
	}
}
