//go:build integration

package nodeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/deploy"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/restore"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

const installNS = "straddle"

// cluster is a real kube-apiserver with the CRDs, a filesystem storage location "fs" and its password.
type cluster struct {
	cfg    *rest.Config
	scheme *runtime.Scheme
	cl     client.Client
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "bin")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{filepath.Join("..", "deploy", "crds")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = v1.AddToScheme(scheme)
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{cfg: cfg, scheme: scheme, cl: cl}
	c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: installNS}})
	// The agents run as the node-agent's service account with the install's RBAC, so every test also
	// proves the ClusterRole and Role allow what the agent does.
	objs, err := deploy.Render(deploy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetName() == "straddle-node-agent" && o.GetKind() != "DaemonSet" {
			c.create(t, o)
		}
	}
	c.create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "repo-password", Namespace: installNS}, Data: map[string][]byte{"password": []byte("agent-test")}})
	return c
}

func (c *cluster) create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := c.cl.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// location creates a storage location and, playing the controller, the repository of namespace ns in it.
func (c *cluster) location(t *testing.T, name string, spec v1.BackupStorageLocationSpec, ns string) *v1.BackupStorageLocation {
	t.Helper()
	spec.RepositoryPasswordSecret = &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "repo-password"}, Key: "password"}
	loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: installNS}, Spec: spec}
	c.create(t, loc)
	if _, err := bsl.OpenRepository(context.Background(), c.cl, loc, ns, true); err != nil {
		t.Fatal(err)
	}
	return loc
}

// agent is one node's node-agent, run in-process through a manager as `straddle node-agent` runs it.
type agent struct {
	r    *PodVolumeBackupReconciler
	stop func()
}

func (c *cluster) startAgent(t *testing.T, node, hostPods string, concurrency int, hook func(context.Context, *v1.PodVolumeBackup), opts ...func(*PodVolumeBackupReconciler)) *agent {
	t.Helper()
	cfg := rest.CopyConfig(c.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + installNS + ":straddle-node-agent"}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: c.scheme, Cache: CacheOptions(node), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &PodVolumeBackupReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("straddle-node-agent"),
		NodeName: node, Namespace: installNS, HostPodsDir: hostPods, ProgressInterval: 50 * time.Millisecond, beforeBackup: hook}
	for _, o := range opts {
		o(r)
	}
	if err := r.SetupWithManager(mgr, concurrency); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	a := &agent{r: r, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent of %s stopped with: %v", node, err)
			}
		})
	}}
	t.Cleanup(a.stop)
	return a
}

// pod creates a pod on node (as the scheduler would have bound it) and returns it with its UID.
func (c *cluster) pod(t *testing.T, ns, name, node string, volumes ...corev1.Volume) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: node, Volumes: volumes,
		Containers: []corev1.Container{{Name: "app", Image: "app:1"}}}}
	c.create(t, p)
	return p
}

// claim creates a PersistentVolume and a claim bound to it by name, as a CSI provisioner would.
func (c *cluster) claim(t *testing.T, ns, name, pv string) {
	t.Helper()
	c.create(t, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pv}, Spec: corev1.PersistentVolumeSpec{
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "csi.example.com", VolumeHandle: pv}},
	}})
	c.create(t, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		VolumeName:  pv,
	}})
}

func claimVolume(name, claim string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}
}

func emptyDirVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

// volumeFolder makes a volume's folder under hostPods in the kubelet's layout and fills it with files.
func volumeFolder(t *testing.T, hostPods string, pod *corev1.Pod, rel string, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(hostPods, string(pod.UID), "volumes", filepath.FromSlash(rel))
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type pvbOpt func(*v1.PodVolumeBackup)

func (c *cluster) pvb(t *testing.T, name, node, location string, pod *corev1.Pod, volume string, opts ...pvbOpt) *v1.PodVolumeBackup {
	t.Helper()
	p := &v1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: installNS, Labels: map[string]string{v1.NodeLabel: node}},
		Spec: v1.PodVolumeBackupSpec{Node: node, Pod: v1.PodReference{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)},
			Volume: volume, StorageLocation: location,
			Tags: map[string]string{bsl.TagNamespace: pod.Namespace, bsl.TagPod: pod.Name, bsl.TagVolume: volume}},
	}
	for _, o := range opts {
		o(p)
	}
	c.create(t, p)
	return p
}

func withPVC(claim string) pvbOpt { return func(p *v1.PodVolumeBackup) { p.Spec.PVC = claim } }
func withExcludes(patterns ...string) pvbOpt {
	return func(p *v1.PodVolumeBackup) { p.Spec.ExcludePatterns = patterns }
}
func withoutPodUID() pvbOpt { return func(p *v1.PodVolumeBackup) { p.Spec.Pod.UID = "" } }

func (c *cluster) get(t *testing.T, name string) *v1.PodVolumeBackup {
	t.Helper()
	var p v1.PodVolumeBackup
	if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNS, Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

// freeAddr is a local address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

func (c *cluster) waitPhase(t *testing.T, name string, phase v1.VolumePhase) *v1.PodVolumeBackup {
	t.Helper()
	var p *v1.PodVolumeBackup
	waitFor(t, fmt.Sprintf("PodVolumeBackup %s to be %s", name, phase), 90*time.Second, func() bool {
		p = c.get(t, name)
		if p.Status.Phase == v1.VolumePhaseFailed && phase != v1.VolumePhaseFailed {
			t.Fatalf("PodVolumeBackup %s failed: %s", name, p.Status.Message)
		}
		return p.Status.Phase == phase
	})
	return p
}

// restoreSnapshot restores a PodVolumeBackup's snapshot from the location's repository of ns, as a user would.
func (c *cluster) restoreSnapshot(t *testing.T, loc *v1.BackupStorageLocation, ns, snapID string) (string, map[string]string, []string) {
	t.Helper()
	ctx := context.Background()
	r, err := bsl.OpenRepository(ctx, c.cl, loc, ns, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	sid, err := id.Parse(snapID)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := r.LoadSnapshot(ctx, sid)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "restored")
	if _, err := restore.Run(ctx, r, snap, restore.Options{Target: dst}); err != nil {
		t.Fatal(err)
	}
	return dst, snap.Tags, snap.Excludes
}

// compareKept compares the restored tree with the source, leaving out the source paths excluded (or
// compared on their own), and the roots' own metadata.
func compareKept(t *testing.T, src, restored string, excluded ...string) {
	t.Helper()
	want, got := repotest.Snapshot(t, src), repotest.Snapshot(t, restored)
	for _, m := range []map[string]repotest.Entry{want, got} {
		for rel := range m {
			for _, ex := range excluded {
				if rel == ex || strings.HasPrefix(rel, ex+"/") {
					delete(m, rel)
				}
			}
		}
		delete(m, ".")
	}
	for _, d := range repotest.DiffSnapshots(want, got) {
		t.Error(d)
	}
}

// sameContent compares two files by streaming them, so a big one is never held in memory.
func sameContent(t *testing.T, want, got string) {
	t.Helper()
	sum := func(p string) string {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	if sum(want) != sum(got) {
		t.Errorf("%s restored with other content", filepath.Base(want))
	}
}

func (c *cluster) events(t *testing.T, pvb *v1.PodVolumeBackup) []string {
	t.Helper()
	var list eventsv1.EventList
	if err := c.cl.List(context.Background(), &list, client.InNamespace(installNS)); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list.Items {
		if e.Regarding.UID == pvb.UID {
			out = append(out, e.Reason+": "+e.Note)
		}
	}
	slices.Sort(out)
	return out
}

func (c *cluster) waitEvent(t *testing.T, pvb *v1.PodVolumeBackup, reason, inNote string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("event %s on %s", reason, pvb.Name), 30*time.Second, func() bool {
		for _, e := range c.events(t, pvb) {
			if strings.HasPrefix(e, reason+": ") && strings.Contains(e, inNote) {
				return true
			}
		}
		return false
	})
}

func TestPodVolumeBackups(t *testing.T) {
	c := startCluster(t)
	locDir := t.TempDir()

	t.Run("backs up a CSI claim and an emptyDir of its node, and leaves other nodes' work alone", func(t *testing.T) {
		ctx := context.Background()
		c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
		loc := c.location(t, "fs", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: locDir}}, "shop")
		hostPods := t.TempDir()
		c.claim(t, "shop", "data-web-0", "pvc-1111")
		pod := c.pod(t, "shop", "web-0", "node-a", claimVolume("data", "data-web-0"), emptyDirVolume("scratch"))
		dataDir := volumeFolder(t, hostPods, pod, "kubernetes.io~csi/pvc-1111/mount", map[string]string{
			"index.html": "<h1>shop</h1>", "img/logo.png": "png", "cache/page.1": "cached", "upload.tmp": "partial", "empty": ""})
		// A sparse file, so the volume holds more than a few bytes.
		f, err := os.Create(filepath.Join(dataDir, "big.img"))
		if err != nil {
			t.Fatal(err)
		}
		_ = f.Truncate(16 << 20)
		_, _ = f.WriteAt([]byte("end"), 16<<20-3)
		f.Close()
		scratchDir := volumeFolder(t, hostPods, pod, "kubernetes.io~empty-dir/scratch", map[string]string{"a": "1", "deep/b": "22"})

		// The first backup waits until the test has seen it InProgress.
		seenInProgress := make(chan struct{})
		hook := func(ctx context.Context, pvb *v1.PodVolumeBackup) {
			if pvb.Name == "web-0-data" {
				select {
				case <-seenInProgress:
				case <-ctx.Done():
				}
			}
		}
		// The backup holds its first reading with bytes done until the test saw it in the API.
		sawProgress := make(chan struct{})
		var holding sync.Once
		a := c.startAgent(t, "node-a", hostPods, 2, hook, func(r *PodVolumeBackupReconciler) {
			r.onProgress = func(ctx context.Context, p backup.Progress) {
				if p.BytesDone > 0 {
					holding.Do(func() {
						select {
						case <-sawProgress:
						case <-ctx.Done():
						}
					})
				}
			}
		})
		data := c.pvb(t, "web-0-data", "node-a", "fs", pod, "data", withPVC("data-web-0"), withExcludes("*.tmp", "cache/**"))
		scratch := c.pvb(t, "web-0-scratch", "node-a", "fs", pod, "scratch", withoutPodUID())
		other := c.pvb(t, "web-1-data", "node-b", "fs", pod, "data", withPVC("data-web-0"))

		p := c.waitPhase(t, data.Name, v1.VolumePhaseInProgress)
		if p.Status.StartTimestamp == nil {
			t.Error("InProgress without startTimestamp")
		}
		close(seenInProgress)
		waitFor(t, "progress of web-0-data while it runs", 60*time.Second, func() bool {
			p = c.get(t, data.Name)
			return p.Status.Phase == v1.VolumePhaseInProgress && p.Status.Progress.BytesDone > 0
		})
		close(sawProgress)
		p = c.waitPhase(t, data.Name, v1.VolumePhaseCompleted)
		st := p.Status
		if st.SnapshotID == "" || st.CompletionTimestamp == nil || st.Stats.FilesNew != 4 || st.Progress.FilesDone != 4 || st.Progress.BytesDone != st.Progress.BytesTotal || st.Progress.BytesTotal < 16<<20 || st.Message != "" || len(st.Warnings) != 0 {
			t.Errorf("completed status %+v", st)
		}
		restored, tags, excludes := c.restoreSnapshot(t, loc, "shop", st.SnapshotID)
		compareKept(t, dataDir, restored, "upload.tmp", "cache", "big.img")
		if _, err := os.Lstat(filepath.Join(restored, "upload.tmp")); err == nil {
			t.Error("excluded upload.tmp was restored")
		}
		if _, err := os.Lstat(filepath.Join(restored, "cache")); err == nil {
			t.Error("excluded cache/ was restored")
		}
		sameContent(t, filepath.Join(dataDir, "big.img"), filepath.Join(restored, "big.img"))
		if tags[bsl.TagPod] != "web-0" || tags[bsl.TagVolume] != "data" || len(tags) != 3 {
			t.Errorf("snapshot tags %v", tags)
		}
		if !slices.Equal(excludes, []string{"*.tmp", "cache/**"}) {
			t.Errorf("snapshot excludes %v", excludes)
		}
		c.waitEvent(t, data, ReasonCompleted, st.SnapshotID)
		c.waitEvent(t, data, ReasonStarted, "backing up volume data of pod shop/web-0")

		// The emptyDir's PodVolumeBackup named no pod UID: the agent read it from the pod.
		sp := c.waitPhase(t, scratch.Name, v1.VolumePhaseCompleted)
		restored, _, _ = c.restoreSnapshot(t, loc, "shop", sp.Status.SnapshotID)
		compareKept(t, scratchDir, restored)

		// The other node's work is not in this agent's cache, and would not be taken if it were.
		time.Sleep(300 * time.Millisecond)
		if op := c.get(t, other.Name); op.Status.Phase != "" {
			t.Errorf("node-a's agent moved node-b's PodVolumeBackup to %q", op.Status.Phase)
		}
		if n := len(c.events(t, other)); n != 0 {
			t.Errorf("%d events on node-b's PodVolumeBackup", n)
		}
		var cached v1.PodVolumeBackupList
		if err := a.r.Client.List(ctx, &cached); err != nil {
			t.Fatal(err)
		}
		for _, item := range cached.Items {
			if item.Spec.Node != "node-a" {
				t.Errorf("node-a's cache holds %s of %s", item.Name, item.Spec.Node)
			}
		}
		a.stop()
	})

	t.Run("a volume that is not there fails with a message a human can act on", func(t *testing.T) {
		hostPods := t.TempDir()
		c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "missing"}})
		c.location(t, "fs-missing", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: locDir}}, "missing")
		pod := c.pod(t, "missing", "db-0", "node-m", emptyDirVolume("data"))
		volumeFolder(t, hostPods, pod, "kubernetes.io~empty-dir/other", nil)
		c.startAgent(t, "node-m", hostPods, 1, nil)
		pvb := c.pvb(t, "db-0-data", "node-m", "fs-missing", pod, "data")
		p := c.waitPhase(t, pvb.Name, v1.VolumePhaseFailed)
		want := fmt.Sprintf(`volume "data" of pod missing/db-0 not found under %s`, filepath.Join(hostPods, string(pod.UID), "volumes"))
		if !strings.Contains(p.Status.Message, want) || !strings.Contains(p.Status.Message, "--host-pods-dir") || p.Status.CompletionTimestamp == nil {
			t.Errorf("message %q\ndoes not say %q", p.Status.Message, want)
		}
		c.waitEvent(t, pvb, ReasonFailed, "not found under")

		// A location that does not exist, and a wrong password, are said as such.
		noLoc := c.pvb(t, "db-0-noloc", "node-m", "no-such-location", pod, "other")
		if p := c.waitPhase(t, noLoc.Name, v1.VolumePhaseFailed); !strings.Contains(p.Status.Message, "storage location straddle/no-such-location") {
			t.Errorf("message %q", p.Status.Message)
		}
		c.create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "wrong-password", Namespace: installNS}, Data: map[string][]byte{"password": []byte("nope")}})
		c.create(t, &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "fs-wrong", Namespace: installNS}, Spec: v1.BackupStorageLocationSpec{
			Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: locDir},
			RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "wrong-password"}, Key: "password"}}})
		wrong := c.pvb(t, "db-0-wrong", "node-m", "fs-wrong", pod, "other")
		if p := c.waitPhase(t, wrong.Name, v1.VolumePhaseFailed); !strings.Contains(p.Status.Message, "does not open the repository at") {
			t.Errorf("message %q", p.Status.Message)
		}
		// Storage nobody answers at: the message names where it was looked for.
		closed := freeAddr(t)
		c.create(t, &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "s3-down", Namespace: installNS}, Spec: v1.BackupStorageLocationSpec{
			Provider: "s3", S3: &v1.S3Location{Endpoint: "http://" + closed, Bucket: "backups", ForcePathStyle: true},
			RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "wrong-password"}, Key: "password"}}})
		down := c.pvb(t, "db-0-down", "node-m", "s3-down", pod, "other")
		start := time.Now()
		if p := c.waitPhase(t, down.Name, v1.VolumePhaseFailed); !strings.Contains(p.Status.Message, closed) || !strings.Contains(p.Status.Message, "s3-down") {
			t.Errorf("message %q does not name the location s3-down at %s", p.Status.Message, closed)
		} else {
			t.Logf("unreachable storage failed after %v: %s", time.Since(start).Round(time.Millisecond), p.Status.Message)
		}
	})

	t.Run("a backup left InProgress by a stopped agent is retried once on start, then failed", func(t *testing.T) {
		hostPods := t.TempDir()
		c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "retry"}})
		loc := c.location(t, "fs-retry", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: locDir}}, "retry")
		pod := c.pod(t, "retry", "q-0", "node-r", emptyDirVolume("data"))
		src := volumeFolder(t, hostPods, pod, "kubernetes.io~empty-dir/data", map[string]string{"x": "x", "y/z": "zz"})

		// The first agent is stopped while the backup runs: it leaves the PodVolumeBackup InProgress.
		running := make(chan struct{})
		first := c.startAgent(t, "node-r", hostPods, 1, func(ctx context.Context, _ *v1.PodVolumeBackup) {
			close(running)
			<-ctx.Done()
		})
		pvb := c.pvb(t, "q-0-data", "node-r", "fs-retry", pod, "data")
		<-running
		first.stop()
		if p := c.get(t, pvb.Name); p.Status.Phase != v1.VolumePhaseInProgress {
			t.Fatalf("after the agent stopped: phase %q, want InProgress", p.Status.Phase)
		}
		// One left InProgress after as many attempts as allowed.
		done := c.pvb(t, "q-0-done", "node-r", "fs-retry", pod, "data")
		done.Status.Phase = v1.VolumePhaseInProgress
		if err := c.cl.Status().Update(context.Background(), done); err != nil {
			t.Fatal(err)
		}
		done.Annotations = map[string]string{AttemptsAnnotation: "2"}
		if err := c.cl.Update(context.Background(), done); err != nil {
			t.Fatal(err)
		}

		c.startAgent(t, "node-r", hostPods, 1, nil)
		p := c.waitPhase(t, pvb.Name, v1.VolumePhaseCompleted)
		if p.Annotations[AttemptsAnnotation] != "2" {
			t.Errorf("attempts annotation %q, want 2", p.Annotations[AttemptsAnnotation])
		}
		restored, _, _ := c.restoreSnapshot(t, loc, "retry", p.Status.SnapshotID)
		compareKept(t, src, restored)
		c.waitEvent(t, pvb, ReasonRetried, "starting attempt 2 of 2")

		f := c.waitPhase(t, done.Name, v1.VolumePhaseFailed)
		if !strings.Contains(f.Status.Message, "node-agent restarted during the backup 2 times") {
			t.Errorf("message %q", f.Status.Message)
		}
	})

	t.Run("no more backups than --concurrency run at once, and deleting one cancels it", func(t *testing.T) {
		hostPods := t.TempDir()
		c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "busy"}})
		c.location(t, "fs-busy", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: locDir}}, "busy")
		var vols []corev1.Volume
		for i := range 4 {
			vols = append(vols, emptyDirVolume(fmt.Sprintf("v%d", i)))
		}
		pod := c.pod(t, "busy", "batch-0", "node-c", vols...)
		for i := range 4 {
			volumeFolder(t, hostPods, pod, fmt.Sprintf("kubernetes.io~empty-dir/v%d", i), map[string]string{"f": strings.Repeat("x", i)})
		}
		var mu sync.Mutex
		running, most := 0, 0
		release := make(chan struct{})
		canceled := make(chan string, 4)
		c.startAgent(t, "node-c", hostPods, 2, func(ctx context.Context, pvb *v1.PodVolumeBackup) {
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			defer func() {
				mu.Lock()
				running--
				mu.Unlock()
			}()
			select {
			case <-release:
			case <-ctx.Done():
				canceled <- pvb.Name
			}
		})
		var names []string
		for i := range 4 {
			names = append(names, c.pvb(t, fmt.Sprintf("batch-0-v%d", i), "node-c", "fs-busy", pod, fmt.Sprintf("v%d", i)).Name)
		}
		inProgress := func() []string {
			var out []string
			for _, n := range names {
				if c.get(t, n).Status.Phase == v1.VolumePhaseInProgress {
					out = append(out, n)
				}
			}
			return out
		}
		waitFor(t, "two backups to run", 30*time.Second, func() bool { return len(inProgress()) == 2 })
		time.Sleep(500 * time.Millisecond)
		if ip := inProgress(); len(ip) != 2 {
			t.Fatalf("%d InProgress with --concurrency 2: %v", len(ip), ip)
		}
		// Deleting a running one cancels its backup and frees its slot.
		victim := inProgress()[0]
		if err := c.cl.Delete(context.Background(), c.get(t, victim)); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-canceled:
			if got != victim {
				t.Errorf("canceled %s, deleted %s", got, victim)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("deleting a running PodVolumeBackup did not cancel its backup")
		}
		close(release)
		for _, n := range names {
			if n != victim {
				c.waitPhase(t, n, v1.VolumePhaseCompleted)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if most != 2 {
			t.Errorf("at most %d backups ran at once, want 2", most)
		}
	})

	t.Run("backs up into a MinIO storage location", func(t *testing.T) {
		srv := miniotest.Start(t)
		bucket := srv.NewBucket(t)
		c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "s3"}})
		c.create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "minio-creds", Namespace: installNS}, Data: map[string][]byte{
			"cloud": fmt.Appendf(nil, "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)}})
		loc := c.location(t, "minio", v1.BackupStorageLocationSpec{Provider: "s3", S3: &v1.S3Location{Endpoint: "http://" + srv.Endpoint, Bucket: bucket, Prefix: "cluster-a", ForcePathStyle: true,
			CredentialsSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "minio-creds"}, Key: "cloud"}}}, "s3")
		hostPods := t.TempDir()
		c.claim(t, "s3", "data-s3-0", "pvc-2222")
		pod := c.pod(t, "s3", "s3-0", "node-s", claimVolume("data", "data-s3-0"))
		files := map[string]string{"one-byte": "1", "zero-bytes": ""}
		for i := range 50 {
			files[fmt.Sprintf("many/f%02d", i)] = strings.Repeat(fmt.Sprint(i), 100*i)
		}
		src := volumeFolder(t, hostPods, pod, "kubernetes.io~local-volume/pvc-2222", files)
		c.startAgent(t, "node-s", hostPods, 2, nil)
		pvb := c.pvb(t, "s3-0-data", "node-s", "minio", pod, "data", withPVC("data-s3-0"))
		p := c.waitPhase(t, pvb.Name, v1.VolumePhaseCompleted)
		restored, _, _ := c.restoreSnapshot(t, loc, "s3", p.Status.SnapshotID)
		compareKept(t, src, restored)

		// A second backup with the first as parent reads nothing again.
		again := c.pvb(t, "s3-0-data-2", "node-s", "minio", pod, "data", withPVC("data-s3-0"), func(b *v1.PodVolumeBackup) { b.Spec.ParentSnapshotID = p.Status.SnapshotID })
		p2 := c.waitPhase(t, again.Name, v1.VolumePhaseCompleted)
		if p2.Status.Stats.BytesRead != 0 || p2.Status.Stats.FilesUnmodified != 52 {
			t.Errorf("incremental stats %+v", p2.Status.Stats)
		}
		// A parent that is not in the repository is a warning, and the backup reads everything.
		lost := c.pvb(t, "s3-0-data-3", "node-s", "minio", pod, "data", withPVC("data-s3-0"), func(b *v1.PodVolumeBackup) { b.Spec.ParentSnapshotID = id.Random().String() })
		p3 := c.waitPhase(t, lost.Name, v1.VolumePhaseCompleted)
		if len(p3.Status.Warnings) != 1 || !strings.Contains(p3.Status.Warnings[0], "is not in the repository") || p3.Status.Stats.FilesUnmodified != 0 {
			t.Errorf("status with a lost parent: %+v", p3.Status)
		}
	})
}
