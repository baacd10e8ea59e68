//go:build integration

package main

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

func TestInstallAndUninstallOnARealAPIServer(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "..", "bin")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s: %v", assets, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func(apiVersion, kind, ns, name string) (*unstructured.Unstructured, error) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(apiVersion)
		u.SetKind(kind)
		return u, cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
	}

	files := t.TempDir()
	creds := "[default]\naws_access_key_id = AKID\naws_secret_access_key = SECRET\n"
	for name, content := range map[string]string{"creds": creds, "pw": "a long repository password\n", "ca.pem": "-----BEGIN CERTIFICATE-----\n"} {
		if err := os.WriteFile(filepath.Join(files, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"install", "--kubeconfig", kc, "--namespace", "backup-system", "--image-registry", "registry.internal:5000", "--host-pods-dir", "/var/lib/k0s/kubelet/pods",
		"--provider", "s3", "--bucket", "backups", "--prefix", "team-a", "--s3-url", "https://minio.internal:9000", "--region", "eu-1",
		"--secret-file", filepath.Join(files, "creds"), "--repository-password-file", filepath.Join(files, "pw"), "--cacert", filepath.Join(files, "ca.pem")}
	for range 2 { // a second install changes nothing and does not fail
		out := mustStraddle(t, args...)
		if !strings.Contains(out, "installed Straddle in namespace backup-system") {
			t.Fatalf("install said %q", out)
		}
	}
	// What --dry-run -o yaml prints is what a GitOps pipeline applies: the API server must accept every
	// document of it (the equivalent of kubectl apply --dry-run=server -f -).
	yamlOut := mustStraddle(t, append(slices.Clone(args), "--dry-run", "-o", "yaml")...)
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(yamlOut), 4096)
	docs := 0
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("--dry-run -o yaml is not YAML: %v", err)
		}
		if err := cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("gitops"), client.ForceOwnership, client.DryRunAll); err != nil {
			t.Errorf("server dry run of %s %s: %v", u.GetKind(), u.GetName(), err)
		}
		docs++
	}
	if docs < 20 {
		t.Errorf("--dry-run -o yaml printed %d objects", docs)
	}
	// The default storage location, applied right after its CRD, and its Secrets.
	bsl, err := get("straddle.io/v1alpha1", "BackupStorageLocation", "backup-system", "default")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]any{"spec.provider": "s3", "spec.default": true, "spec.s3.bucket": "backups", "spec.s3.prefix": "team-a",
		"spec.s3.endpoint": "https://minio.internal:9000", "spec.s3.region": "eu-1", "spec.s3.credentialsSecret.name": "straddle-storage-credentials",
		"spec.repositoryPasswordSecret.name": "straddle-repository-password", "spec.s3.caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="} {
		if got, _, _ := unstructured.NestedFieldNoCopy(bsl.Object, strings.Split(path, ".")...); got != want {
			t.Errorf("location %s = %v, want %v", path, got, want)
		}
	}
	for name, want := range map[string]string{"straddle-storage-credentials": creds, "straddle-repository-password": "a long repository password"} {
		sec, err := get("v1", "Secret", "backup-system", name)
		if err != nil {
			t.Fatal(err)
		}
		data, _, _ := unstructured.NestedStringMap(sec.Object, "data")
		for _, v := range data {
			if dec, _ := base64.StdEncoding.DecodeString(v); string(dec) != want {
				t.Errorf("Secret %s holds %q, want %q", name, dec, want)
			}
		}
	}
	ds, err := get("apps/v1", "DaemonSet", "backup-system", "straddle-node-agent")
	if err != nil {
		t.Fatal(err)
	}
	containers, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	if img := containers[0].(map[string]any)["image"].(string); !strings.HasPrefix(img, "registry.internal:5000/") {
		t.Errorf("node-agent image %s ignores --image-registry", img)
	}
	volumes, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "volumes")
	if p := volumes[0].(map[string]any)["hostPath"].(map[string]any)["path"]; p != "/var/lib/k0s/kubelet/pods" {
		t.Errorf("host pods dir %v", p)
	}
	cm, err := get("v1", "ConfigMap", "backup-system", "straddle-restore-helper")
	if err != nil {
		t.Fatal(err)
	}
	if img, _, _ := unstructured.NestedString(cm.Object, "data", "image"); !strings.HasPrefix(img, "registry.internal:5000/") {
		t.Errorf("restore helper image %s ignores --image-registry", img)
	}
	images := strings.Fields(mustStraddle(t, "images", "--image-registry", "registry.internal:5000"))
	if len(images) != 2 || !strings.Contains(strings.Join(images, " "), img(containers)) {
		t.Errorf("straddle images lists %v; the install uses %s", images, img(containers))
	}

	mustStraddle(t, "uninstall", "--kubeconfig", kc, "--namespace", "backup-system")
	if _, err := get("apps/v1", "DaemonSet", "backup-system", "straddle-node-agent"); !apierrors.IsNotFound(err) {
		t.Errorf("node-agent still there after uninstall: %v", err)
	}
	if _, err := get("rbac.authorization.k8s.io/v1", "ClusterRole", "", "straddle-controller"); !apierrors.IsNotFound(err) {
		t.Errorf("controller ClusterRole still there after uninstall: %v", err)
	}
	if _, err := get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "backups.straddle.io"); err != nil {
		t.Errorf("uninstall removed the CRDs without --include-crds: %v", err)
	}
}

func img(containers []any) string { return containers[0].(map[string]any)["image"].(string) }
