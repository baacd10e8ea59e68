//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/deploy"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/s3"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
	"github.com/straddle-io/straddle/test/kubeletsim"
)

// The simulated nodes, each with a node-agent of its own.
const (
	nodeA = "node-a"
	nodeB = "node-b"
)

// installNamespace is where `straddle install` puts everything, and where Backups and PodVolumeBackups live.
const installNamespace = deploy.DefaultNamespace

// clusterOptions shape a test's cluster.
type clusterOptions struct {
	// DefaultVolumesToFsBackup is passed to install and to the controller.
	DefaultVolumesToFsBackup bool
	// Fill writes a data volume's fixture (see fillFunc); nil leaves volumes empty.
	Fill fillFunc
	// Place picks the node of a pod that names none in its nodeSelector; nil places round-robin.
	Place func(pod *corev1.Pod) string
	// Storage, when set, is the MinIO and bucket of another cluster to install against (a migration);
	// nil starts a MinIO with a fresh bucket.
	Storage *sharedStorage
	// InstallArgs are more `straddle install` flags (--image-registry, --repository-password-file).
	InstallArgs []string
	// ControllerArgs and NodeAgentArgs are more flags for `straddle controller` and each `straddle node-agent`.
	ControllerArgs []string
	NodeAgentArgs  []string
}

// sharedStorage names a running MinIO and one of its buckets.
type sharedStorage struct {
	minio  *miniotest.Server
	bucket string
}

// cluster is a running Straddle installation: control plane, MinIO, controller, node-agents and the kubelet
// simulator. Everything stops when the test ends; on failure the test log gets the API objects' statuses and
// every process's log.
type cluster struct {
	dir        string // the test's scratch space: host pods dirs, credentials, restores
	logDir     string
	kubeconfig string
	cfg        *rest.Config
	cl         client.Client
	cs         kubernetes.Interface
	minio      *miniotest.Server
	bucket     string
	controller *server
	agents     map[string]*server
	kubelet    *kubeletsim.Kubelet
}

// startCluster starts everything and returns once every process is ready and the default storage location
// is Available.
func startCluster(t *testing.T, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{dir: t.TempDir(), agents: map[string]*server{}}
	c.startLogs(t)
	cfg := c.startControlPlane(t)
	c.cfg = cfg

	if opts.Storage != nil {
		c.minio, c.bucket = opts.Storage.minio, opts.Storage.bucket
	} else {
		c.minio = miniotest.Start(t)
		c.bucket = c.minio.NewBucket(t)
	}
	c.install(t, opts.DefaultVolumesToFsBackup, opts.InstallArgs)
	ctx := context.Background()
	for _, node := range []string{nodeA, nodeB} {
		c.createNode(t, ctx, node)
		if err := os.MkdirAll(c.podsDir(node), 0o750); err != nil {
			t.Fatal(err)
		}
	}

	ctrlArgs := []string{"controller", "--kubeconfig", c.kubeconfig, "--namespace", installNamespace}
	if opts.DefaultVolumesToFsBackup {
		ctrlArgs = append(ctrlArgs, "--default-volumes-to-fs-backup")
	}
	// The restore webhook on a port of its own, which the API server calls by URL: the controller runs
	// outside the cluster, where the install's Service reaches nothing.
	hookAddr := freeAddr(t)
	ctrlArgs = append(ctrlArgs, "--webhook-port", hookAddr[strings.LastIndex(hookAddr, ":")+1:], "--webhook-url", "https://"+hookAddr)
	ctrlArgs = append(ctrlArgs, opts.ControllerArgs...)
	c.controller = startServer(t, "controller", filepath.Join(c.logDir, "controller.log"), ctrlArgs...)
	for _, node := range []string{nodeA, nodeB} {
		c.agents[node] = startServer(t, "node-agent "+node, filepath.Join(c.logDir, "node-agent-"+node+".log"),
			append([]string{"node-agent", "--kubeconfig", c.kubeconfig, "--namespace", installNamespace, "--node-name", node, "--host-pods-dir", c.podsDir(node)}, opts.NodeAgentArgs...)...)
	}
	c.kubelet = startKubelet(t, cfg, kubeletsim.Options{
		Nodes: []string{nodeA, nodeB}, PodsDir: c.podsDir, Fill: opts.Fill, Place: opts.Place,
		LogPath: filepath.Join(c.logDir, "kubelet-simulator.log"),
	})
	// Registered last, so it runs first: the API server still answers while the test's failure is dumped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cluster state at the end of the failed test:\n%s", c.dump())
		}
	})
	c.waitLocationAvailable(t)
	return c
}

// startLogs makes the folder of the processes' logs; a failed test prints them and keeps the folder.
func (c *cluster) startLogs(t *testing.T) {
	dir, err := os.MkdirTemp("", "straddle-e2e-logs-")
	if err != nil {
		t.Fatal(err)
	}
	c.logDir = dir
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(dir)
			return
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			t.Logf("===== %s =====\n%s", e.Name(), tail(filepath.Join(dir, e.Name()), 96<<10))
		}
		t.Logf("process logs kept in %s", dir)
	})
}

// startControlPlane starts kube-apiserver and etcd without CRDs (install applies them) and writes an admin
// kubeconfig, as a cluster's operator would hold.
func (c *cluster) startControlPlane(t *testing.T) *rest.Config {
	env := &envtest.Environment{BinaryAssetsDirectory: assetsDir()}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s (run make bin/kube-apiserver bin/etcd): %v", assetsDir(), err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "e2e-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatalf("add the admin user: %v", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatalf("admin kubeconfig: %v", err)
	}
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := os.WriteFile(c.kubeconfig, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := appsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if c.cl, err = client.New(admin.Config(), client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	if c.cs, err = kubernetes.NewForConfig(admin.Config()); err != nil {
		t.Fatal(err)
	}
	return admin.Config()
}

// install runs the real `straddle install` against MinIO, with an AWS credentials file as a user writes it.
func (c *cluster) install(t *testing.T, defaultAll bool, extra []string) {
	creds := filepath.Join(c.dir, "minio-credentials")
	file := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", c.minio.AccessKey, c.minio.SecretKey)
	if err := os.WriteFile(creds, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"install", "--kubeconfig", c.kubeconfig, "--provider", "s3", "--s3-url", "http://" + c.minio.Endpoint,
		"--bucket", c.bucket, "--secret-file", creds}
	if defaultAll {
		args = append(args, "--default-volumes-to-fs-backup")
	}
	args = append(args, extra...)
	if res := runStraddle(2*time.Minute, nil, args...); res.err != nil {
		t.Fatalf("install: %s", res)
	}
}

// createNode registers a Ready node, as its kubelet would.
func (c *cluster) createNode(t *testing.T, ctx context.Context, name string) {
	if err := kubeletsim.RegisterNode(ctx, c.cs, name); err != nil {
		t.Fatal(err)
	}
}

// podsDir is the kubelet pods directory of node, which its node-agent gets as --host-pods-dir.
func (c *cluster) podsDir(node string) string { return filepath.Join(c.dir, node, "pods") }

// waitLocationAvailable waits for the controller to find the installed storage location reachable.
func (c *cluster) waitLocationAvailable(t *testing.T) {
	t.Helper()
	var loc v1.BackupStorageLocation
	c.waitFor(t, "storage location default to be Available", time.Minute, func() (bool, error) {
		err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: deploy.DefaultLocationName}, &loc)
		return err == nil && loc.Status.Phase == v1.LocationAvailable, err
	})
}

// waitFor polls ok until it says true; it fails the test at timeout, or at once when a server process died.
func (c *cluster) waitFor(t testing.TB, what string, timeout time.Duration, ok func() (bool, error)) {
	t.Helper()
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		done, err := ok()
		if done {
			return
		}
		last = err
		if err := c.serversDied(); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
	t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, last)
}

// serversDied reports every server process that exited without the test killing it.
func (c *cluster) serversDied() error {
	var errs []error
	if c.controller != nil {
		errs = append(errs, c.controller.died())
	}
	for _, node := range []string{nodeA, nodeB} {
		if a := c.agents[node]; a != nil {
			errs = append(errs, a.died())
		}
	}
	return errors.Join(errs...)
}

// cli runs a straddle command against this cluster (KUBECONFIG set), bounded by timeout.
func (c *cluster) cli(timeout time.Duration, args ...string) cliResult {
	return runStraddle(timeout, []string{"KUBECONFIG=" + c.kubeconfig}, args...)
}

// repositoryURL is the `straddle repo --repo` location of the repository of namespace's volumes
// (bsl.RepositoryPath: repositories/<namespace> in the bucket).
func (c *cluster) repositoryURL(namespace string) string {
	return c.minio.URL(c.bucket, "repositories/"+namespace)
}

// repoEnv is the environment `straddle repo` needs for the installed location: MinIO's credentials and the
// repository password install stored in its Secret.
func (c *cluster) repoEnv(t testing.TB) []string {
	t.Helper()
	var sec corev1.Secret
	key := client.ObjectKey{Namespace: installNamespace, Name: deploy.RepositoryPasswordSecret}
	if err := c.cl.Get(context.Background(), key, &sec); err != nil {
		t.Fatalf("read the repository password: %v", err)
	}
	pw := sec.Data[deploy.RepositoryPasswordKey]
	if len(pw) == 0 {
		t.Fatalf("Secret %s has no %s", key, deploy.RepositoryPasswordKey)
	}
	return []string{"AWS_ACCESS_KEY_ID=" + c.minio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + c.minio.SecretKey, "AWS_SESSION_TOKEN=",
		"STRADDLE_PASSWORD=" + string(pw)}
}

// repo runs `straddle repo ARGS --repo <repository of namespace>` with the installed credentials.
func (c *cluster) repo(t testing.TB, timeout time.Duration, namespace string, args ...string) cliResult {
	t.Helper()
	args = append(append([]string{"repo"}, args...), "--repo", c.repositoryURL(namespace))
	return runStraddle(timeout, c.repoEnv(t), args...)
}

// restoreSnapshot restores snapshot of namespace's repository into target with `straddle repo restore`.
func (c *cluster) restoreSnapshot(t testing.TB, namespace, snapshot, target string) {
	t.Helper()
	if res := c.repo(t, 5*time.Minute, namespace, "restore", snapshot, "--target", target); res.err != nil {
		t.Fatalf("restore snapshot %s of namespace %s: %s", snapshot, namespace, res)
	}
}

// bucketObjects lists the objects of the bucket below prefix, with their sizes.
func (c *cluster) bucketObjects(t testing.TB, prefix string) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	be, err := s3.Open(ctx, c.minio.Options(c.bucket, ""))
	if err != nil {
		t.Fatalf("open bucket %s: %v", c.bucket, err)
	}
	objs := map[string]int64{}
	err = be.List(ctx, prefix, func(fi storage.Info) error {
		objs[fi.Name] = fi.Size
		return nil
	})
	if err != nil {
		t.Fatalf("list %s in bucket %s: %v", prefix, c.bucket, err)
	}
	return objs
}

// dump describes Backups, PodVolumeBackups, Restores, PodVolumeRestores and pods for a failed test's log.
func (c *cluster) dump() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	var backups v1.BackupList
	if err := c.cl.List(ctx, &backups, client.InNamespace(installNamespace)); err != nil {
		fmt.Fprintf(&b, "list Backups: %v\n", err)
	}
	for _, bk := range backups.Items {
		s := bk.Status
		fmt.Fprintf(&b, "Backup %s: phase %q, volumes %d (completed %d, failed %d), progress %+v, skipped %+v, errors %q, warnings %q, resources %+v\n",
			bk.Name, s.Phase, s.VolumesTotal, s.VolumesCompleted, s.VolumesFailed, s.Progress, s.SkippedVolumes, s.Errors, s.Warnings, s.Resources)
	}
	var pvbs v1.PodVolumeBackupList
	if err := c.cl.List(ctx, &pvbs, client.InNamespace(installNamespace)); err != nil {
		fmt.Fprintf(&b, "list PodVolumeBackups: %v\n", err)
	}
	sort.Slice(pvbs.Items, func(i, j int) bool { return pvbs.Items[i].Name < pvbs.Items[j].Name })
	for _, p := range pvbs.Items {
		fmt.Fprintf(&b, "PodVolumeBackup %s (backup %s): %s/%s volume %s on %s: phase %q, snapshot %q, progress %+v, stats %+v, message %q\n",
			p.Name, p.Labels[v1.BackupLabel], p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume, p.Spec.Node, p.Status.Phase,
			p.Status.SnapshotID, p.Status.Progress, p.Status.Stats, p.Status.Message)
	}
	var restores v1.RestoreList
	if err := c.cl.List(ctx, &restores, client.InNamespace(installNamespace)); err != nil {
		fmt.Fprintf(&b, "list Restores: %v\n", err)
	}
	for _, r := range restores.Items {
		s := r.Status
		fmt.Fprintf(&b, "Restore %s (uid %s, backup %s): phase %q, volumes %d (completed %d, failed %d), resources %+v, skipped %+v, errors %q, warnings %q\n",
			r.Name, r.UID, r.Spec.BackupName, s.Phase, s.VolumesTotal, s.VolumesCompleted, s.VolumesFailed, s.Resources, s.SkippedResources, s.Errors, s.Warnings)
	}
	var pvrs v1.PodVolumeRestoreList
	if err := c.cl.List(ctx, &pvrs, client.InNamespace(installNamespace)); err != nil {
		fmt.Fprintf(&b, "list PodVolumeRestores: %v\n", err)
	}
	sort.Slice(pvrs.Items, func(i, j int) bool { return pvrs.Items[i].Name < pvrs.Items[j].Name })
	for _, p := range pvrs.Items {
		fmt.Fprintf(&b, "PodVolumeRestore %s (restore %s): %s/%s (uid %s) volume %s from %s on %s: phase %q, progress %+v, message %q\n",
			p.Name, p.Labels[v1.RestoreLabel], p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Pod.UID, p.Spec.Volume, p.Spec.SourceNamespace,
			p.Spec.Node, p.Status.Phase, p.Status.Progress, p.Status.Message)
	}
	var pods corev1.PodList
	if err := c.cl.List(ctx, &pods); err != nil {
		fmt.Fprintf(&b, "list Pods: %v\n", err)
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "Pod %s/%s (uid %s): node %q, phase %q\n", p.Namespace, p.Name, p.UID, p.Spec.NodeName, p.Status.Phase)
	}
	if c.kubelet != nil {
		b.WriteString(c.kubelet.Errors())
	}
	return b.String()
}
