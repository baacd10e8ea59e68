//go:build integration

package nodeagent

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
	restorehelper "github.com/straddle-io/straddle/restore-helper"
)

// startRestoreAgent runs one node's node-agent with only the restore workers (restores and the marker
// cleanup), as `straddle node-agent` runs them.
func (c *cluster) startRestoreAgent(t *testing.T, node, hostPods string, opts ...func(*PodVolumeRestoreReconciler)) (stop func()) {
	t.Helper()
	cfg := rest.CopyConfig(c.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + installNS + ":straddle-node-agent"}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: c.scheme, Cache: CacheOptions(node), Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &PodVolumeRestoreReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Recorder: mgr.GetEventRecorder("straddle-node-agent"),
		NodeName: node, Namespace: installNS, HostPodsDir: hostPods, ProgressInterval: 50 * time.Millisecond, FolderPoll: 100 * time.Millisecond}
	for _, o := range opts {
		o(r)
	}
	if err := r.SetupWithManager(mgr, 2); err != nil {
		t.Fatal(err)
	}
	cleanup := &MarkerCleanupReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), NodeName: node, HostPodsDir: hostPods}
	if err := cleanup.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent of %s stopped with: %v", node, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// snapshotOf backs up a folder of files (with the given modes) into the repository of ns in loc, tagged as
// the node-agent tags a pod volume's backup, and returns the folder and the snapshot's ID.
func (c *cluster) snapshotOf(t *testing.T, loc *v1.BackupStorageLocation, ns string, files map[string]string, modes map[string]os.FileMode) (string, string) {
	t.Helper()
	ctx := context.Background()
	src := t.TempDir()
	for name, content := range files {
		p := filepath.Join(src, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range modes {
		if err := os.Chmod(filepath.Join(src, filepath.FromSlash(name)), mode); err != nil {
			t.Fatal(err)
		}
	}
	rp, err := bsl.OpenRepository(ctx, c.cl, loc, ns, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := backup.Run(ctx, rp, backup.Options{Path: src, Host: ns + "/web-0",
		Tags: map[string]string{bsl.TagBackup: "nightly", bsl.TagNamespace: ns, bsl.TagPod: "web-0", bsl.TagPodUID: "old-uid", bsl.TagVolume: "data"}})
	if err != nil {
		t.Fatal(err)
	}
	return src, out.Snapshot.ID.String()
}

// restoreObject creates the Restore that owns PodVolumeRestores; its UID names the markers.
func (c *cluster) restoreObject(t *testing.T, name string) *v1.Restore {
	t.Helper()
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: installNS}, Spec: v1.RestoreSpec{BackupName: "nightly"}}
	c.create(t, r)
	return r
}

// pvr creates, playing the controller, the PodVolumeRestore of one volume of pod as the restore contract says.
func (c *cluster) pvr(t *testing.T, owner *v1.Restore, node, location string, pod *corev1.Pod, volume, snapID, sourceNS string) *v1.PodVolumeRestore {
	t.Helper()
	p := &v1.PodVolumeRestore{
		ObjectMeta: metav1.ObjectMeta{Name: owner.Name + "-" + string(pod.UID)[:8] + "-" + volume, Namespace: installNS,
			Labels: map[string]string{v1.NodeLabel: node, v1.RestoreLabel: owner.Name},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Restore", Name: owner.Name, UID: owner.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		Spec: v1.PodVolumeRestoreSpec{Node: node, Pod: v1.PodReference{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID)},
			Volume: volume, StorageLocation: location, SnapshotID: snapID, SourceNamespace: sourceNS},
	}
	c.create(t, p)
	return p
}

func (c *cluster) getPVR(t *testing.T, name string) *v1.PodVolumeRestore {
	t.Helper()
	var p v1.PodVolumeRestore
	if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNS, Name: name}, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

func (c *cluster) waitPVR(t *testing.T, name string, phase v1.VolumePhase) *v1.PodVolumeRestore {
	t.Helper()
	var p *v1.PodVolumeRestore
	waitFor(t, fmt.Sprintf("PodVolumeRestore %s to be %s", name, phase), 90*time.Second, func() bool {
		p = c.getPVR(t, name)
		if p.Status.Phase == v1.VolumePhaseFailed && phase != v1.VolumePhaseFailed {
			t.Fatalf("PodVolumeRestore %s failed: %s", name, p.Status.Message)
		}
		return p.Status.Phase == phase
	})
	return p
}

func (c *cluster) waitEventOn(t *testing.T, uid types.UID, reason, inNote string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("event %s", reason), 30*time.Second, func() bool {
		var list eventsv1.EventList
		if err := c.cl.List(context.Background(), &list, client.InNamespace(installNS)); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(list.Items, func(e eventsv1.Event) bool {
			return e.Regarding.UID == uid && e.Reason == reason && strings.Contains(e.Note, inNote)
		})
	})
}

// sameTree compares a restored volume with the backed-up folder: content, modes, times, ownership and
// links, leaving out the roots' own metadata and the marker folder.
func sameTree(t *testing.T, src, vol string) {
	t.Helper()
	want, got := repotest.Snapshot(t, src), repotest.Snapshot(t, vol)
	for rel := range got {
		if rel == MarkerDir || strings.HasPrefix(rel, MarkerDir+"/") {
			delete(got, rel)
		}
	}
	delete(want, ".")
	delete(got, ".")
	for _, d := range repotest.DiffSnapshots(want, got) {
		t.Error(d)
	}
}

func TestPodVolumeRestores(t *testing.T) {
	c := startCluster(t)
	locDir := t.TempDir()
	c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	c.create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop-copy"}})
	loc := c.location(t, "fs", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: locDir}}, "shop")
	files := map[string]string{"index.html": "<h1>shop</h1>", "bin/run.sh": "#!/bin/sh\nexec shop\n", "secret": "s3cr3t", "empty": "",
		"db/table.1": strings.Repeat("row\n", 50000), "bin/lib/deep": "deep"}
	modes := map[string]os.FileMode{"bin/run.sh": 0o755, "secret": 0o600, "db": 0o700}
	src, snapID := c.snapshotOf(t, loc, "shop", files, modes)
	hostPods := t.TempDir()
	// The first restore with bytes written holds until the test saw its progress in the API.
	sawProgress := make(chan struct{})
	var closeSaw sync.Once
	t.Cleanup(func() { closeSaw.Do(func() { close(sawProgress) }) })
	var holding sync.Once
	c.startRestoreAgent(t, "node-a", hostPods, func(r *PodVolumeRestoreReconciler) {
		r.onProgress = func(ctx context.Context, p v1.Progress) {
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

	t.Run("waits for the claim's folder, restores it byte for byte inside the volume, marker last, other nodes' alone", func(t *testing.T) {
		c.claim(t, "shop-copy", "data-web-0", "pvc-r1")
		pod := c.pod(t, "shop-copy", "web-0", "node-a", claimVolume("data", "data-web-0"))
		rst := c.restoreObject(t, "r1")
		mine := c.pvr(t, rst, "node-a", "fs", pod, "data", snapID, "shop")
		other := c.pvr(t, rst, "node-b", "fs", c.pod(t, "shop-copy", "web-1", "node-b"), "data", snapID, "shop")

		p := c.waitPVR(t, mine.Name, v1.VolumePhaseInProgress)
		if p.Status.StartTimestamp == nil {
			t.Error("InProgress without startTimestamp")
		}
		waitFor(t, "the wait for the folder in status", 30*time.Second, func() bool {
			return strings.Contains(c.getPVR(t, mine.Name).Status.Message, "waiting for the volume folder")
		})
		c.waitEventOn(t, mine.UID, ReasonRestoreWaiting, "waiting for the volume folder")
		time.Sleep(300 * time.Millisecond)
		if p := c.getPVR(t, mine.Name); p.Status.Phase != v1.VolumePhaseInProgress {
			t.Fatalf("phase %s before the folder exists: %s", p.Status.Phase, p.Status.Message)
		}

		// The kubelet creates the folder when the pod starts; a symlink out of the volume is already in it.
		outside := t.TempDir()
		vol := volumeFolder(t, hostPods, pod, "kubernetes.io~csi/pvc-r1/mount", nil)
		if err := os.Symlink(outside, filepath.Join(vol, "bin")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "progress while the restore runs", 60*time.Second, func() bool {
			p = c.getPVR(t, mine.Name)
			return p.Status.Phase == v1.VolumePhaseInProgress && p.Status.Progress.BytesDone > 0
		})
		if p.Status.Message != "" || p.Status.Progress.BytesTotal < 200000 {
			t.Errorf("status while restoring %+v", p.Status)
		}
		if _, err := os.Stat(filepath.Join(vol, MarkerDir)); !os.IsNotExist(err) {
			t.Errorf("marker folder there before the restore finished: %v", err)
		}
		closeSaw.Do(func() { close(sawProgress) })
		p = c.waitPVR(t, mine.Name, v1.VolumePhaseCompleted)
		st := p.Status
		if st.CompletionTimestamp == nil || st.Message != "" || st.Progress.FilesDone != 6 || st.Progress.FilesTotal != 6 ||
			st.Progress.BytesDone != st.Progress.BytesTotal || st.Progress.BytesTotal < 200000 {
			t.Errorf("completed status %+v", st)
		}
		sameTree(t, src, vol)
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("the restore wrote through a symlink out of the volume: %v", entries)
		}
		fi, err := os.Lstat(filepath.Join(vol, MarkerDir))
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o777 {
			t.Errorf("%s: %v %v, want a directory of mode 0777", MarkerDir, fi.Mode(), err)
		}
		if entries, _ := os.ReadDir(filepath.Join(vol, MarkerDir)); len(entries) != 1 || entries[0].Name() != string(rst.UID) {
			t.Errorf("marker folder holds %v, want only the restore UID %s", entries, rst.UID)
		}
		if fi, err := os.Stat(filepath.Join(vol, MarkerDir, string(rst.UID))); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("marker %v %v", fi.Mode(), err)
		}
		c.waitEventOn(t, mine.UID, ReasonRestoreStarted, "into volume data of pod shop-copy/web-0 on node node-a")
		c.waitEventOn(t, mine.UID, ReasonRestoreCompleted, "in 6 files")
		if o := c.getPVR(t, other.Name); o.Status.Phase != "" {
			t.Errorf("node-a's agent took node-b's PodVolumeRestore: %+v", o.Status)
		}
	})

	t.Run("the restore helper returns only once every file is in place", func(t *testing.T) {
		many := map[string]string{}
		for i := range 300 {
			many[fmt.Sprintf("d%d/f%03d", i%7, i)] = strings.Repeat(fmt.Sprint(i), 200*(i%13))
		}
		manySrc, manySnap := c.snapshotOf(t, loc, "shop", many, nil)
		pod := c.pod(t, "shop", "helped-0", "node-a", emptyDirVolume("scratch"))
		vol := volumeFolder(t, hostPods, pod, "kubernetes.io~empty-dir/scratch", nil)
		restores := t.TempDir()
		if err := os.Symlink(vol, filepath.Join(restores, "scratch")); err != nil {
			t.Fatal(err)
		}
		rst := c.restoreObject(t, "r2")
		helped := make(chan error, 1)
		go func() {
			err := restorehelper.Wait(context.Background(), restorehelper.Options{RestoreUID: string(rst.UID), RestoresDir: restores,
				Timeout: 90 * time.Second, Poll: time.Millisecond}, io.Discard)
			if err == nil {
				// What the app would see the moment the init container exits.
				for _, d := range repotest.DiffSnapshots(withoutRoot(repotest.Snapshot(t, manySrc)), withoutRoot(repotest.Snapshot(t, vol))) {
					err = fmt.Errorf("when the helper returned: %s", d)
				}
			}
			helped <- err
		}()
		time.Sleep(50 * time.Millisecond)
		p := c.pvr(t, rst, "node-a", "fs", pod, "scratch", manySnap, "shop")
		if err := <-helped; err != nil {
			t.Fatal(err)
		}
		c.waitPVR(t, p.Name, v1.VolumePhaseCompleted)
	})

	t.Run("a snapshot that is not in the repository fails with what to do", func(t *testing.T) {
		pod := c.pod(t, "shop", "lost-0", "node-a", emptyDirVolume("data"))
		volumeFolder(t, hostPods, pod, "kubernetes.io~empty-dir/data", nil)
		p := c.pvr(t, c.restoreObject(t, "r3"), "node-a", "fs", pod, "data", id.Random().String(), "shop")
		p = c.waitPVR(t, p.Name, v1.VolumePhaseFailed)
		if !strings.Contains(p.Status.Message, "is not in the repository of namespace shop") || !strings.Contains(p.Status.Message, "forgotten and pruned") {
			t.Errorf("message %q", p.Status.Message)
		}
		c.waitEventOn(t, p.UID, ReasonRestoreFailed, "is not in the repository")
		if _, err := os.Stat(filepath.Join(hostPods, string(pod.UID), "volumes", "kubernetes.io~empty-dir", "data", MarkerDir)); !os.IsNotExist(err) {
			t.Errorf("a failed restore wrote a marker: %v", err)
		}
	})

	t.Run("a folder that never appears fails after the bound", func(t *testing.T) {
		c.startRestoreAgent(t, "node-w", t.TempDir(), func(r *PodVolumeRestoreReconciler) { r.FolderWait = 2 * time.Second })
		pod := c.pod(t, "shop", "never-0", "node-w", emptyDirVolume("data"))
		p := c.pvr(t, c.restoreObject(t, "r4"), "node-w", "fs", pod, "data", snapID, "shop")
		start := time.Now()
		p = c.waitPVR(t, p.Name, v1.VolumePhaseFailed)
		if !strings.Contains(p.Status.Message, "the volume folder never appeared on node node-w within 2s") {
			t.Errorf("message %q", p.Status.Message)
		}
		// startTimestamp, which the bound counts from, is stored to the second.
		if time.Since(start) < time.Second {
			t.Errorf("failed after %v, before the bound", time.Since(start))
		}
	})

	t.Run("a restore the agent was killed during is retried by the next agent", func(t *testing.T) {
		pods := t.TempDir()
		// The first agent dies while its restore runs.
		running := make(chan struct{})
		var once sync.Once
		stop := c.startRestoreAgent(t, "node-r", pods, func(r *PodVolumeRestoreReconciler) {
			r.beforeRestore = func(ctx context.Context, _ *v1.PodVolumeRestore) {
				once.Do(func() { close(running) })
				<-ctx.Done()
			}
		})
		pod := c.pod(t, "shop", "killed-0", "node-r", emptyDirVolume("data"))
		vol := volumeFolder(t, pods, pod, "kubernetes.io~empty-dir/data", map[string]string{"index.html": "stale"})
		rst := c.restoreObject(t, "r5")
		p := c.pvr(t, rst, "node-r", "fs", pod, "data", snapID, "shop")
		<-running
		stop()
		if got := c.getPVR(t, p.Name); got.Status.Phase != v1.VolumePhaseInProgress {
			t.Fatalf("phase %s after the agent died", got.Status.Phase)
		}
		c.startRestoreAgent(t, "node-r", pods)
		got := c.waitPVR(t, p.Name, v1.VolumePhaseCompleted)
		if got.Annotations[AttemptsAnnotation] != "2" {
			t.Errorf("attempts %q, want 2", got.Annotations[AttemptsAnnotation])
		}
		c.waitEventOn(t, p.UID, ReasonRestoreRetried, "starting attempt 2 of 3")
		sameTree(t, src, vol)

		// One the agent died during as often as allowed is failed with the reason, never left InProgress.
		// Written while no agent of node-r-2 runs, as a dead agent left it.
		exhausted := c.pvr(t, c.restoreObject(t, "r6"), "node-r-2", "fs", pod, "data", snapID, "shop")
		exhausted.Annotations = map[string]string{AttemptsAnnotation: "3"}
		if err := c.cl.Update(context.Background(), exhausted); err != nil {
			t.Fatal(err)
		}
		exhausted.Status.Phase = v1.VolumePhaseInProgress
		exhausted.Status.StartTimestamp = &metav1.Time{Time: time.Now()}
		if err := c.cl.Status().Update(context.Background(), exhausted); err != nil {
			t.Fatal(err)
		}
		c.startRestoreAgent(t, "node-r-2", pods)
		got = c.waitPVR(t, exhausted.Name, v1.VolumePhaseFailed)
		if !strings.Contains(got.Status.Message, "node-agent restarted during the restore 3 times") {
			t.Errorf("message %q", got.Status.Message)
		}
	})

	t.Run("a restore whose PodVolumeRestore is deleted is canceled", func(t *testing.T) {
		pods := t.TempDir()
		held := make(chan struct{})
		var once sync.Once
		c.startRestoreAgent(t, "node-d", pods, func(r *PodVolumeRestoreReconciler) {
			r.beforeRestore = func(ctx context.Context, _ *v1.PodVolumeRestore) {
				once.Do(func() { close(held) })
				<-ctx.Done()
			}
		})
		pod := c.pod(t, "shop", "deleted-0", "node-d", emptyDirVolume("data"))
		vol := volumeFolder(t, pods, pod, "kubernetes.io~empty-dir/data", nil)
		p := c.pvr(t, c.restoreObject(t, "r8"), "node-d", "fs", pod, "data", snapID, "shop")
		<-held
		if err := c.cl.Delete(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		c.waitEventOn(t, p.UID, ReasonRestoreCanceled, "the PodVolumeRestore was deleted")
		if _, err := os.Stat(filepath.Join(vol, MarkerDir)); !os.IsNotExist(err) {
			t.Errorf("a canceled restore wrote a marker: %v", err)
		}
	})

	t.Run("restores from a MinIO storage location", func(t *testing.T) {
		srv := miniotest.Start(t)
		bucket := srv.NewBucket(t)
		c.create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "minio-creds", Namespace: installNS}, Data: map[string][]byte{
			"cloud": fmt.Appendf(nil, "[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)}})
		s3loc := c.location(t, "minio", v1.BackupStorageLocationSpec{Provider: "s3", S3: &v1.S3Location{Endpoint: "http://" + srv.Endpoint, Bucket: bucket, Prefix: "cluster-a", ForcePathStyle: true,
			CredentialsSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "minio-creds"}, Key: "cloud"}}}, "shop")
		s3src, s3snap := c.snapshotOf(t, s3loc, "shop", files, modes)
		pod := c.pod(t, "shop-copy", "s3-0", "node-a", emptyDirVolume("data"))
		vol := volumeFolder(t, hostPods, pod, "kubernetes.io~empty-dir/data", nil)
		rst := c.restoreObject(t, "r7")
		p := c.pvr(t, rst, "node-a", "minio", pod, "data", s3snap, "shop")
		c.waitPVR(t, p.Name, v1.VolumePhaseCompleted)
		sameTree(t, s3src, vol)
		if _, err := os.Stat(filepath.Join(vol, MarkerDir, string(rst.UID))); err != nil {
			t.Errorf("no marker: %v", err)
		}
	})
}
