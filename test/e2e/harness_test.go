//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestHarness proves the harness itself, with no Backup reconciler or node-agent worker needed: everything
// starts and is ready, the simulator binds pods and makes, fills and mounts their volumes where a kubelet
// would, a node-agent can be killed and restarted, logs are captured, and a snapshot taken in the installed
// location restores and compares byte for byte.
func TestHarness(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: func(pod *corev1.Pod, volume, dir string) error {
		switch volume {
		case "data":
			return writeMixed(dir, 1)
		case "claim":
			return writeSmallFiles(dir, 250, 7)
		}
		return nil
	}})
	ctx := context.Background()
	const ns = "selftest"
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c.cl, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "token", Namespace: ns}, Data: map[string][]byte{"token": []byte("s3cr3t")}})
	c.createClaim(t, ns, "claim", "pv-selftest", "1Gi")
	mustCreate(t, c.cl, testPod(ns, "placed", nodeB, nil,
		emptyDirVolume("data"), claimVolume("claim", "claim"), secretVolume("token", "token"),
		corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}}))
	mustCreate(t, c.cl, testPod(ns, "spread-1", "", nil, emptyDirVolume("data")))
	mustCreate(t, c.cl, testPod(ns, "spread-2", "", nil, emptyDirVolume("data")))
	pods := c.waitPodsRunning(t, ns, 3)

	nodes := map[string]string{}
	var placed corev1.Pod
	for _, p := range pods {
		nodes[p.Name] = p.Spec.NodeName
		if p.Name == "placed" {
			placed = p
		}
		checkRunningStatus(t, p)
	}
	if nodes["placed"] != nodeB {
		t.Errorf("pod placed by its nodeSelector runs on %q, want %s", nodes["placed"], nodeB)
	}
	if nodes["spread-1"] == nodes["spread-2"] {
		t.Errorf("round-robin put both spread pods on %s", nodes["spread-1"])
	}

	// The folders are where DESIGN §7 says a node-agent finds them, written here without the harness's own
	// path helpers so a mistake in them cannot hide.
	vols := filepath.Join(c.dir, nodeB, "pods", string(placed.UID), "volumes")
	for path, want := range map[string]string{
		"kubernetes.io~empty-dir/data/config/app.yaml":        "seed: 1\nreplicas: 3\n",
		"kubernetes.io~csi/pv-selftest/mount/d002/f00249.txt": "file 249 of seed 7\n",
		"kubernetes.io~secret/token/token":                    "s3cr3t",
		"kubernetes.io~empty-dir/data/current-config":         "seed: 1\nreplicas: 3\n",
		"kubernetes.io~csi/pv-selftest/mount/d000/f00000.txt": "file 0 of seed 7\n",
		"kubernetes.io~empty-dir/data/logs/empty.log":         "",
	} {
		b, err := os.ReadFile(filepath.Join(vols, path))
		if err != nil {
			t.Errorf("volume file %s: %v", path, err)
			continue
		}
		if !strings.HasPrefix(string(b), want) || (want == "" && len(b) != 0) {
			t.Errorf("volume file %s holds %.40q, want it to start with %q", path, b, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(vols, "kubernetes.io~empty-dir", "data")); err != nil || fi.Mode().Perm() != 0o777 {
		t.Errorf("emptyDir folder: %v, mode %v; the kubelet makes it 0777", err, fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(vols, "kubernetes.io~host-path")); !os.IsNotExist(err) {
		t.Errorf("a hostPath volume got a folder in the pods directory: %v", err)
	}
	if got := c.volumeDir(t, ns, "placed", "claim"); got != filepath.Join(vols, "kubernetes.io~csi", "pv-selftest", "mount") {
		t.Errorf("volumeDir of the claim = %s", got)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "claim"}, &pvc); err != nil || pvc.Status.Phase != corev1.ClaimBound {
		t.Errorf("claim: %v, phase %q, want Bound", err, pvc.Status.Phase)
	}

	t.Run("servers are ready and log to files", func(t *testing.T) {
		for _, s := range c.servers() {
			if err := s.probeOnce(); err != nil {
				t.Errorf("%s: %v", s.name, err)
			}
			if log := tail(s.logPath, 1<<20); !strings.Contains(log, "=== e2e: start 1 of "+s.name) {
				t.Errorf("log of %s does not show its start:\n%s", s.name, log)
			}
		}
	})

	t.Run("a node-agent is killed and restarted", func(t *testing.T) {
		agent := c.agents[nodeA]
		before := agent.pid()
		agent.kill9(t)
		if !agent.exited() || agent.exitErr() == nil || !strings.Contains(agent.exitErr().Error(), "killed") {
			t.Fatalf("after SIGKILL: exited %v, %v", agent.exited(), agent.exitErr())
		}
		if err := c.serversDied(); err != nil {
			t.Errorf("a process the test killed counts as died: %v", err)
		}
		agent.restart(t)
		if agent.pid() == before {
			t.Errorf("restart kept pid %d", before)
		}
		if err := agent.probeOnce(); err != nil {
			t.Errorf("restarted agent not ready: %v", err)
		}
		log := tail(agent.logPath, 1<<20)
		for _, want := range []string{"=== e2e: start 1 of node-agent node-a", "=== e2e: killed node-agent node-a", "=== e2e: start 2 of node-agent node-a"} {
			if !strings.Contains(log, want) {
				t.Errorf("log of the restarted agent lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("a snapshot in the installed location restores byte for byte", func(t *testing.T) {
		vol := c.volumeDir(t, ns, "placed", "claim")
		if res := c.repo(t, time.Minute, ns, "init"); res.err != nil {
			t.Fatalf("init: %s", res)
		}
		res := c.repo(t, 2*time.Minute, ns, "backup", vol, "--json")
		if res.err != nil {
			t.Fatalf("backup: %s", res)
		}
		var doc struct {
			SnapshotID string `json:"snapshot_id"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || doc.SnapshotID == "" {
			t.Fatalf("backup --json printed %q: %v", res.stdout, err)
		}
		target := filepath.Join(t.TempDir(), "restored")
		c.restoreSnapshot(t, ns, doc.SnapshotID, target)
		if err := compareTrees(vol, target); err != nil {
			t.Fatal(err)
		}
		if objs := c.bucketObjects(t, "repositories/"+ns+"/snapshots/"); len(objs) != 1 {
			t.Errorf("snapshots in the bucket: %v, want one", objs)
		}
	})

	t.Run("a deleted pod loses its folder", func(t *testing.T) {
		var p corev1.Pod
		if err := c.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "spread-1"}, &p); err != nil {
			t.Fatal(err)
		}
		if err := c.cl.Delete(ctx, &p); err != nil {
			t.Fatal(err)
		}
		c.waitFor(t, "pod spread-1 to go", 30*time.Second, func() (bool, error) {
			err := c.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: "spread-1"}, &corev1.Pod{})
			return apierrors.IsNotFound(err), err
		})
		if _, err := os.Stat(filepath.Join(c.podsDir(p.Spec.NodeName), string(p.UID))); !os.IsNotExist(err) {
			t.Errorf("folder of the deleted pod: %v", err)
		}
	})
}

// checkRunningStatus checks a pod's status is what a kubelet reports for a running, ready pod.
func checkRunningStatus(t *testing.T, p corev1.Pod) {
	t.Helper()
	if p.Status.PodIP == "" || p.Status.StartTime == nil {
		t.Errorf("pod %s: no podIP or startTime: %+v", p.Name, p.Status)
	}
	ready := false
	for _, c := range p.Status.Conditions {
		ready = ready || c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	}
	if !ready {
		t.Errorf("pod %s: not Ready: %+v", p.Name, p.Status.Conditions)
	}
	if len(p.Status.ContainerStatuses) != len(p.Spec.Containers) || p.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("pod %s: containers not running: %+v", p.Name, p.Status.ContainerStatuses)
	}
}

func TestCompareTrees(t *testing.T) {
	a := t.TempDir()
	if err := writeMixed(a, 3); err != nil {
		t.Fatal(err)
	}
	if err := writeRandomFile(filepath.Join(a, "blob"), 3<<20+17, 9, 0o600); err != nil {
		t.Fatal(err)
	}
	copyOf := func(t *testing.T) string {
		b := filepath.Join(t.TempDir(), "copy")
		if err := os.CopyFS(b, os.DirFS(a)); err != nil {
			t.Fatal(err)
		}
		// CopyFS copies neither modes of directories nor links faithfully; set what the original has.
		if err := os.Remove(filepath.Join(b, "current-config")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.Symlink("config/app.yaml", filepath.Join(b, "current-config")); err != nil {
			t.Fatal(err)
		}
		if err := filepath.Walk(a, func(p string, fi os.FileInfo, err error) error {
			if err != nil || fi.Mode().Type() == os.ModeSymlink {
				return err
			}
			rel, _ := filepath.Rel(a, p)
			return os.Chmod(filepath.Join(b, rel), fi.Mode().Perm())
		}); err != nil {
			t.Fatal(err)
		}
		return b
	}
	if err := compareTrees(a, copyOf(t)); err != nil {
		t.Fatalf("a faithful copy differs: %v", err)
	}
	t.Run("skipped paths are left out on both sides", func(t *testing.T) {
		b := copyOf(t)
		if err := errors.Join(os.Chmod(b, mustMode(t, a)), os.WriteFile(filepath.Join(b, "blob"), []byte("other"), 0o600),
			os.WriteFile(filepath.Join(b, "extra.tmp"), nil, 0o600)); err != nil {
			t.Fatal(err)
		}
		skip := func(rel string) bool { return rel == "blob" || strings.HasSuffix(rel, ".tmp") }
		if err := compareTreesExcept(a, b, skip); err != nil {
			t.Errorf("differences only in skipped paths: %v", err)
		}
		if err := compareTreesExcept(a, b, func(rel string) bool { return rel == "blob" }); err == nil {
			t.Error("an extra file not skipped went unnoticed")
		}
	})
	for name, change := range map[string]struct {
		mutate func(b string) error
		want   string
	}{
		"one byte of a big file": {func(b string) error {
			f, err := os.OpenFile(filepath.Join(b, "blob"), os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{'x'}, 2<<20+5)
			return err
		}, "blob: content differs"},
		"a file cut short": {func(b string) error { return os.Truncate(filepath.Join(b, "blob"), 3<<20) }, "blob: content differs"},
		"a mode":           {func(b string) error { return os.Chmod(filepath.Join(b, "data", "table.db"), 0o644) }, "data/table.db: mode"},
		"a root mode":      {func(b string) error { return os.Chmod(b, 0o701) }, ".: mode"},
		"a missing file":   {func(b string) error { return os.Remove(filepath.Join(b, "logs", "empty.log")) }, "logs/empty.log: missing"},
		"an extra file":    {func(b string) error { return os.WriteFile(filepath.Join(b, "extra"), nil, 0o644) }, "extra: not in the original"},
		"a link target": {func(b string) error {
			p := filepath.Join(b, "current-config")
			return errors.Join(os.Remove(p), os.Symlink("bin/run.sh", p))
		}, "current-config: link to"},
		"a type": {func(b string) error {
			p := filepath.Join(b, "empty-dir")
			return errors.Join(os.Remove(p), os.WriteFile(p, nil, 0o700))
		}, "empty-dir: type"},
	} {
		t.Run(name, func(t *testing.T) {
			b := copyOf(t)
			if err := os.Chmod(b, mustMode(t, a)); err != nil {
				t.Fatal(err)
			}
			if err := change.mutate(b); err != nil {
				t.Fatal(err)
			}
			err := compareTrees(a, b)
			if err == nil || !strings.Contains(err.Error(), change.want) {
				t.Fatalf("compareTrees = %v, want it to say %q", err, change.want)
			}
		})
	}
}

func mustMode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// Builders of the test's API objects.

func mustCreate(t testing.TB, cl client.Client, obj client.Object) {
	t.Helper()
	if err := cl.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// testPod is a one-container pod; node, when set, places it through its nodeSelector.
func testPod(namespace, name, node string, annotations map[string]string, volumes ...corev1.Volume) *corev1.Pod {
	noToken := false
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Annotations: annotations, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			// No service-account token volume: the pods' volumes are exactly the ones the test lists.
			AutomountServiceAccountToken: &noToken,
			Containers:                   []corev1.Container{{Name: "app", Image: "registry.example/app:1"}},
			Volumes:                      volumes,
		},
	}
	for _, v := range volumes {
		p.Spec.Containers[0].VolumeMounts = append(p.Spec.Containers[0].VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: "/mnt/" + v.Name})
	}
	if node != "" {
		p.Spec.NodeSelector = map[string]string{hostnameLabel: node}
	}
	return p
}

func emptyDirVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

func claimVolume(name, claim string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
}

func secretVolume(name, secret string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: secret}}}
}

// createClaim creates a CSI PersistentVolume and a claim bound to it by name (spec.volumeName); the
// simulator marks both Bound when a pod mounts the claim.
func (c *cluster) createClaim(t testing.TB, namespace, claim, pv, size string) {
	t.Helper()
	q := resource.MustParse(size)
	mustCreate(t, c.cl, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: pv},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: q},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: namespace, Name: claim},
			PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.e2e.straddle.io", VolumeHandle: "handle-" + pv}},
		},
	})
	mustCreate(t, c.cl, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claim, Namespace: namespace},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: q}},
			VolumeName:  pv,
		},
	})
}

// servers lists the cluster's straddle processes.
func (c *cluster) servers() []*server {
	return []*server{c.controller, c.agents[nodeA], c.agents[nodeB]}
}
