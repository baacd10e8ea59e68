//go:build integration

// Package deploy_test proves the install manifests against a real kube-apiserver: they apply cleanly with
// server-side apply, twice, and the RBAC they grant is what each component needs and no more.
package deploy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

// loadBase reads every object the Kustomization lists, in its order.
func loadBase(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("base", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	for _, res := range k.Resources {
		data, err := os.ReadFile(filepath.Join("base", res))
		if err != nil {
			t.Fatalf("kustomization lists %s: %v", res, err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", res, err)
			}
			if len(u.Object) > 0 {
				objs = append(objs, u)
			}
		}
	}
	return objs
}

func TestBaseAppliesAndGrantsLeastPrivilege(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join("..", "bin")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd from %s (make test-integration builds them): %v", assets, err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	objs := loadBase(t)
	kinds := map[string]int{}
	for round := range 2 { // applying twice must be a no-op the second time, as GitOps tools do
		for _, o := range objs {
			if err := cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("straddle-install"), client.ForceOwnership); err != nil {
				t.Fatalf("apply %s %s (round %d): %v", o.GetKind(), o.GetName(), round+1, err)
			}
			if round == 0 {
				kinds[o.GetKind()]++
			}
		}
	}
	for kind, want := range map[string]int{"CustomResourceDefinition": 7, "Namespace": 1, "ServiceAccount": 2, "ClusterRole": 2, "Deployment": 1, "DaemonSet": 1, "ConfigMap": 1,
		"Service": 1, "MutatingWebhookConfiguration": 1} {
		if kinds[kind] != want {
			t.Errorf("%d %s objects, want %d", kinds[kind], kind, want)
		}
	}

	get := func(kind, name string) map[string]any {
		t.Helper()
		var u unstructured.Unstructured
		u.SetAPIVersion("apps/v1")
		u.SetKind(kind)
		if err := cl.Get(ctx, client.ObjectKey{Namespace: "straddle", Name: name}, &u); err != nil {
			t.Fatal(err)
		}
		return u.Object
	}
	ds := unstructured.Unstructured{Object: get("DaemonSet", "straddle-node-agent")}
	tolerations, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "tolerations")
	if len(tolerations) != 1 || tolerations[0].(map[string]any)["operator"] != "Exists" || tolerations[0].(map[string]any)["key"] != nil {
		t.Errorf("node-agent tolerations %v, want every taint tolerated", tolerations)
	}
	containers, _, _ := unstructured.NestedSlice(ds.Object, "spec", "template", "spec", "containers")
	mounts, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "volumeMounts")
	if len(mounts) != 2 || mounts[0].(map[string]any)["mountPropagation"] != "HostToContainer" || mounts[0].(map[string]any)["mountPath"] != "/host_pods" ||
		mounts[1].(map[string]any)["mountPath"] != "/tmp" {
		t.Errorf("node-agent mounts %v, want the host pods directory at /host_pods with HostToContainer and a scratch /tmp", mounts)
	}
	// Root with named capabilities on a read-only root, not privileged (docs/install.md says why each).
	sc, _, _ := unstructured.NestedMap(containers[0].(map[string]any), "securityContext")
	add, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "add")
	drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop")
	if !slices.Equal(add, []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "SETFCAP"}) || !slices.Equal(drop, []string{"ALL"}) ||
		sc["privileged"] != nil || sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false {
		t.Errorf("node-agent securityContext %v", sc)
	}
	dep := unstructured.Unstructured{Object: get("Deployment", "straddle-controller")}
	dcs, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(dcs[0].(map[string]any), "args")
	if !slices.Contains(args, "--leader-elect") {
		t.Errorf("controller args %v lack --leader-elect", args)
	}

	for _, c := range []struct {
		sa, ns, group, resource, sub, verb string
		allowed                            bool
	}{
		{"straddle-node-agent", "app", "straddle.io", "podvolumebackups", "status", "update", true},
		{"straddle-node-agent", "app", "straddle.io", "podvolumerestores", "", "watch", true},
		{"straddle-node-agent", "straddle", "", "secrets", "", "get", true},
		{"straddle-node-agent", "app", "", "secrets", "", "get", false},
		{"straddle-node-agent", "app", "", "pods", "", "delete", false},
		{"straddle-node-agent", "app", "straddle.io", "backups", "", "create", false},
		{"straddle-node-agent", "straddle", "straddle.io", "backups", "", "get", true},
		{"straddle-node-agent", "straddle", "straddle.io", "backups", "", "update", false},
		{"straddle-node-agent", "app", "straddle.io", "podvolumebackups", "", "delete", false},
		// Maintenance: node-agents claim, heartbeat and record runs in the status of the install namespace's
		// BackupRepositories, and change nothing else of them.
		{"straddle-node-agent", "straddle", "straddle.io", "backuprepositories", "", "watch", true},
		{"straddle-node-agent", "straddle", "straddle.io", "backuprepositories", "status", "update", true},
		{"straddle-node-agent", "app", "straddle.io", "backuprepositories", "status", "update", false},
		{"straddle-node-agent", "straddle", "straddle.io", "backuprepositories", "", "update", false},
		{"straddle-node-agent", "straddle", "straddle.io", "backuprepositories", "", "delete", false},
		{"straddle-controller", "app", "straddle.io", "podvolumebackups", "", "create", true},
		{"straddle-controller", "app", "", "pods", "", "list", true},
		{"straddle-controller", "straddle", "coordination.k8s.io", "leases", "", "update", true},
		// A backup stores every resource of its namespaces, Secrets included (issue 5): the controller reads
		// everything; a restore creates them again (issue 6). It watches, changes and deletes nothing of the
		// applications'.
		{"straddle-controller", "app", "", "secrets", "", "get", true},
		{"straddle-controller", "app", "", "secrets", "", "watch", false},
		{"straddle-controller", "app", "", "secrets", "", "create", true},
		{"straddle-controller", "app", "", "secrets", "", "update", false},
		{"straddle-controller", "", "", "namespaces", "", "create", true},
		{"straddle-controller", "", "", "namespaces", "", "delete", false},
		{"straddle-controller", "app", "apps", "deployments", "", "list", true},
		{"straddle-controller", "app", "apps", "deployments", "", "create", true},
		{"straddle-controller", "app", "apps", "deployments", "", "update", false},
		{"straddle-controller", "app", "rbac.authorization.k8s.io", "rolebindings", "", "create", true},
		{"straddle-controller", "straddle", "events.k8s.io", "events", "", "create", true},
		{"straddle-controller", "app", "", "pods", "", "delete", false},
		// Backup hooks run commands in the backed-up pods (issue 8); the node-agent runs none.
		{"straddle-controller", "app", "", "pods", "exec", "create", true},
		{"straddle-node-agent", "app", "", "pods", "exec", "create", false},
		// The restore webhook: namespaces labelled while restored into, its certificate's Secret made.
		{"straddle-controller", "", "", "namespaces", "", "patch", true},
		{"straddle-controller", "", "", "namespaces", "", "update", false},
		{"straddle-controller", "straddle", "", "secrets", "", "create", true},
		{"straddle-controller", "straddle", "", "secrets", "", "update", false},
		{"straddle-controller", "", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "patch", false},
		{"straddle-controller", "", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "patch", false},
	} {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: "system:serviceaccount:straddle:" + c.sa,
			ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: c.ns, Group: c.group, Resource: c.resource, Subresource: c.sub, Verb: c.verb,
			},
		}}
		if err := cl.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allowed {
			t.Errorf("%s %s %s/%s in %q: allowed=%v, want %v", c.sa, c.verb, c.resource, c.sub, c.ns, sar.Status.Allowed, c.allowed)
		}
	}
	// Rules bound to one object by name: the webhook's certificate and configuration, the repository password
	// (a rotation switches it), and no other.
	for _, c := range []struct {
		ns, group, resource, name, verb string
		allowed                         bool
	}{
		{"straddle", "", "secrets", "straddle-webhook-tls", "update", true},
		{"straddle", "", "secrets", "straddle-repository-password", "update", true},
		{"straddle", "", "secrets", "straddle-credentials", "update", false},
		{"straddle", "", "secrets", "straddle-storage-credentials", "update", false},
		{"", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "straddle-restore-wait", "patch", true},
		{"", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "straddle-restore-wait", "get", true},
		{"", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "istio-sidecar-injector", "patch", false},
	} {
		sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:straddle:straddle-controller",
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: c.ns, Group: c.group, Resource: c.resource, Name: c.name, Verb: c.verb},
		}}
		if err := cl.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allowed {
			t.Errorf("controller %s %s %s in %q: allowed=%v, want %v", c.verb, c.resource, c.name, c.ns, sar.Status.Allowed, c.allowed)
		}
	}
}
