package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/deploy"
	"github.com/straddle-io/straddle/test/kubeletsim"
)

// The simulated nodes, each with a node-agent of its own.
var nodes = []string{"node-a", "node-b"}

// installNamespace is where `straddle install` puts everything.
const installNamespace = deploy.DefaultNamespace

// startCluster starts the control plane, the storage, installs Straddle, and runs its servers and the
// kubelet simulator.
func (d *demo) startCluster(ctx context.Context) error {
	d.section("A local cluster: kube-apiserver and etcd, two nodes, Straddle installed")
	if err := check("the control plane starts", d.startControlPlane()); err != nil {
		return err
	}
	d.note("kube-apiserver and etcd run from %s; KUBECONFIG=%s", d.opts.assets, d.kubeconfig)
	install, err := d.storage(ctx)
	if err != nil {
		return check("the storage starts", err)
	}
	if err := check("straddle install succeeds", d.straddle(ctx, 2*time.Minute, install...)); err != nil {
		return err
	}
	for _, node := range nodes {
		if err := kubeletsim.RegisterNode(ctx, d.cs, node); err != nil {
			return check("the nodes register", err)
		}
		if err := os.MkdirAll(d.podsDir(node), 0o750); err != nil {
			return fmt.Errorf("make the pods folder of %s: %w", node, err)
		}
	}
	return check("the controller and node-agents run", d.startServers(ctx))
}

// startControlPlane starts kube-apiserver and etcd without CRDs (install applies them) and writes an admin
// kubeconfig, as a cluster's operator would hold.
func (d *demo) startControlPlane() error {
	// A busy machine (CI beside other builds) starts kube-apiserver slowly; envtest's default 20 s is too short.
	d.env = &envtest.Environment{BinaryAssetsDirectory: d.opts.assets, ControlPlaneStartTimeout: 2 * time.Minute}
	cfg, err := d.env.Start()
	if err != nil {
		return fmt.Errorf("start kube-apiserver and etcd from %s: %w", d.opts.assets, err)
	}
	admin, err := d.env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		return fmt.Errorf("add the admin user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("admin kubeconfig: %w", err)
	}
	d.kubeconfig = filepath.Join(d.dir, "kubeconfig")
	if err := os.WriteFile(d.kubeconfig, kubeconfig, 0o600); err != nil {
		return fmt.Errorf("write the kubeconfig: %w", err)
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, v1.AddToScheme} {
		if err := add(scheme); err != nil {
			return fmt.Errorf("scheme: %w", err)
		}
	}
	d.cfg = admin.Config()
	if d.cl, err = client.New(d.cfg, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if d.cs, err = kubernetes.NewForConfig(d.cfg); err != nil {
		return fmt.Errorf("clientset: %w", err)
	}
	return nil
}

// storage makes the storage location and returns the `straddle install` arguments that point at it: a folder
// of the demo's temporary folder (which the node-agents, local processes, see at the same path, as a
// DaemonSet's hostPath mount would), or a MinIO server with a fresh bucket.
func (d *demo) storage(ctx context.Context) ([]string, error) {
	if d.opts.storage == "filesystem" {
		// In a cluster the DaemonSet's hostPath mount makes the folder (DirectoryOrCreate); here nothing does.
		path := filepath.Join(d.dir, "backups")
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("make the storage folder: %w", err)
		}
		return []string{"install", "--provider", "filesystem", "--path", path}, nil
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	console, err := freeAddr()
	if err != nil {
		return nil, err
	}
	user, password := "demo-"+randomHex(4), randomHex(16)
	p, err := startProc("minio", filepath.Join(d.dir, "minio.log"), []string{"MINIO_ROOT_USER=" + user, "MINIO_ROOT_PASSWORD=" + password,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off"}, d.opts.minio, "server", filepath.Join(d.dir, "minio"), "--address", addr, "--console-address", console)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	if err := p.waitHealthy(ctx, "http://"+addr+"/minio/health/live"); err != nil {
		return nil, err
	}
	const bucket = "straddle"
	mc, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(user, password, "")})
	if err != nil {
		return nil, fmt.Errorf("minio client: %w", err)
	}
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
		return nil, fmt.Errorf("make bucket %s: %w", bucket, err)
	}
	creds := filepath.Join(d.dir, "minio-credentials")
	file := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", user, password)
	if err := os.WriteFile(creds, []byte(file), 0o600); err != nil {
		return nil, fmt.Errorf("write the MinIO credentials: %w", err)
	}
	d.note("MinIO serves bucket %s at http://%s", bucket, addr)
	return []string{"install", "--provider", "s3", "--s3-url", "http://" + addr, "--bucket", bucket, "--secret-file", creds}, nil
}

// startServers runs `straddle controller`, one `straddle node-agent` per node and the kubelet simulator,
// and waits until they are ready and the storage location is Available.
func (d *demo) startServers(ctx context.Context) error {
	// The restore webhook on a port of its own, which the API server calls by URL: the controller runs
	// outside the cluster, where the install's Service reaches nothing.
	hook, err := freeAddr()
	if err != nil {
		return err
	}
	servers := [][]string{{"controller", "--webhook-port", hook[strings.LastIndex(hook, ":")+1:], "--webhook-url", "https://" + hook}}
	for _, node := range nodes {
		servers = append(servers, []string{"node-agent", "--node-name", node, "--host-pods-dir", d.podsDir(node)})
	}
	d.note("in a cluster the install's Deployment and DaemonSet run these; here they are local processes:")
	for _, args := range servers {
		probe, err := freeAddr()
		if err != nil {
			return err
		}
		metrics, err := freeAddr()
		if err != nil {
			return err
		}
		name := args[0]
		if args[0] == "node-agent" {
			name += " " + args[2]
		}
		fmt.Fprintf(d.out, "#   straddle %s\n", strings.Join(args, " "))
		args = append(args, "--kubeconfig", d.kubeconfig, "--namespace", installNamespace, "--health-probe-bind-address", probe, "--metrics-bind-address", metrics)
		p, err := startProc(name, filepath.Join(d.dir, strings.ReplaceAll(name, " ", "-")+".log"), nil, d.opts.straddle, args...)
		if err != nil {
			return err
		}
		d.procs = append(d.procs, p)
		if err := p.waitHealthy(ctx, "http://"+probe+"/readyz"); err != nil {
			return err
		}
	}
	d.kubelet, err = kubeletsim.Start(d.cfg, kubeletsim.Options{Nodes: nodes, PodsDir: d.podsDir, Fill: fillVoting,
		LogPath: filepath.Join(d.dir, "kubelet-simulator.log"), RestoreHelper: d.opts.restoreHelper})
	if err != nil {
		return err
	}
	d.note("the kubelet simulator (test/kubeletsim) binds pods, mounts their volumes in each node's pods folder and runs restore-wait")
	return d.waitFor(ctx, "storage location default to be Available", time.Minute, func() (bool, error) {
		var loc v1.BackupStorageLocation
		if err := d.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: deploy.DefaultLocationName}, &loc); err != nil {
			return false, err
		}
		return loc.Status.Phase == v1.LocationAvailable, fmt.Errorf("phase %q: %s", loc.Status.Phase, loc.Status.Message)
	})
}

// podsDir is the kubelet pods folder of node, which its node-agent gets as --host-pods-dir.
func (d *demo) podsDir(node string) string { return filepath.Join(d.dir, "nodes", node, "pods") }

// waitFor polls ok until it says true; it gives up at timeout, when ctx ends, or when a server died.
func (d *demo) waitFor(ctx context.Context, what string, timeout time.Duration, ok func() (bool, error)) error {
	return kubeletsim.WaitFor(ctx, what, timeout, d.procs.died, ok)
}

// randomHex returns n random bytes in hex, for credentials.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
