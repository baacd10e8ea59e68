//go:build integration

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/s3"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

// controlPlane starts a real kube-apiserver with the CRDs and returns an admin kubeconfig file and client.
func controlPlane(t *testing.T) (string, client.Client) {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "..", "bin")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets, CRDDirectoryPaths: []string{filepath.Join("..", "..", "deploy", "crds")}, ErrorIfCRDPathMissing: true}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, _ := admin.KubeConfig()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	_ = corev1.AddToScheme(scheme)
	_ = v1.AddToScheme(scheme)
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return kc, cl
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// runServer runs a straddle server command until the test ends and returns its probe address.
func runServer(t *testing.T, args ...string) string {
	t.Helper()
	probe := freeAddr(t)
	if args[0] == "controller" {
		// Its own port for the restore webhook: tests run controllers side by side.
		_, port, _ := net.SplitHostPort(freeAddr(t))
		args = append(args, "--webhook-port", port)
	}
	cmd := newRootCmd()
	cmd.SetArgs(append(args, "--health-probe-bind-address", probe, "--metrics-bind-address", "0"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s stopped with: %v", args[0], err)
		}
	})
	waitFor(t, "health probe of "+args[0], func() bool {
		resp, err := http.Get("http://" + probe + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return probe
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestControllerMarksStorageLocations(t *testing.T) {
	kc, cl := controlPlane(t)
	ctx := context.Background()
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "straddle"}}); err != nil {
		t.Fatal(err)
	}
	runServer(t, "controller", "--kubeconfig", kc, "--namespace", "straddle", "--leader-elect")

	good := t.TempDir()
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	for name, file := range map[string]string{
		"minio-good":  fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey),
		"minio-wrong": fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = not-the-secret\n", srv.AccessKey),
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle"}, Data: map[string][]byte{"cloud": []byte(file)}}
		if err := cl.Create(ctx, sec); err != nil {
			t.Fatal(err)
		}
	}
	s3loc := func(bucket, secret string) v1.BackupStorageLocationSpec {
		return v1.BackupStorageLocationSpec{Provider: "s3", S3: &v1.S3Location{Endpoint: "http://" + srv.Endpoint, Bucket: bucket, Prefix: "cluster-a", ForcePathStyle: true,
			CredentialsSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "cloud"}}}
	}
	locs := map[string]v1.BackupStorageLocationSpec{
		"good":              {Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: good}},
		"missing":           {Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: filepath.Join(good, "not-there")}},
		"minio":             s3loc(bucket, "minio-good"),
		"minio-wrong-creds": s3loc(bucket, "minio-wrong"),
		"minio-no-bucket":   s3loc("not-a-bucket", "minio-good"),
	}
	for name, spec := range locs {
		if err := cl.Create(ctx, &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle"}, Spec: spec}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]struct {
		phase     v1.LocationPhase
		inMessage string
	}{
		"good":              {v1.LocationAvailable, "reachable"},
		"missing":           {v1.LocationUnavailable, "not-there"},
		"minio":             {v1.LocationAvailable, "reachable"},
		"minio-wrong-creds": {v1.LocationUnavailable, "check the storage credentials"},
		"minio-no-bucket":   {v1.LocationUnavailable, "bucket does not exist"},
	}
	for name, w := range want {
		var loc v1.BackupStorageLocation
		waitFor(t, fmt.Sprintf("location %s to be %s", name, w.phase), func() bool {
			return cl.Get(ctx, client.ObjectKey{Namespace: "straddle", Name: name}, &loc) == nil && loc.Status.Phase == w.phase
		})
		if !strings.Contains(loc.Status.Message, w.inMessage) {
			t.Errorf("location %s: message %q does not say %q", name, loc.Status.Message, w.inMessage)
		}
		if strings.Contains(loc.Status.Message, srv.SecretKey) || strings.Contains(loc.Status.Message, "not-the-secret") {
			t.Errorf("location %s: message %q shows a secret", name, loc.Status.Message)
		}
	}
	// The access check leaves nothing behind in the bucket.
	be, err := s3.Open(ctx, srv.Options(bucket, ""))
	if err != nil {
		t.Fatal(err)
	}
	if err := be.List(ctx, "", func(fi storage.Info) error { return fmt.Errorf("object %s left in the bucket", fi.Name) }); err != nil {
		t.Error(err)
	}
}

func TestNodeAgentServesProbesAndNeedsItsNode(t *testing.T) {
	kc, _ := controlPlane(t)
	hostPods := t.TempDir()
	runServer(t, "node-agent", "--kubeconfig", kc, "--node-name", "node-1", "--host-pods-dir", hostPods)

	t.Setenv("NODE_NAME", "")
	cmd := newRootCmd()
	cmd.SetArgs([]string{"node-agent", "--kubeconfig", kc, "--host-pods-dir", hostPods})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Fatalf("node-agent without a node name: %v", err)
	}
	cmd = newRootCmd()
	cmd.SetArgs([]string{"node-agent", "--kubeconfig", kc, "--node-name", "n", "--host-pods-dir", filepath.Join(hostPods, "missing")})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "not mounted") {
		t.Fatalf("node-agent without its host pods directory: %v", err)
	}
}
