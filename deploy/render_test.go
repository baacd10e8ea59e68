package deploy

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %s", kind, name)
	return nil
}

func TestRenderDefaults(t *testing.T) {
	objs, err := Render(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetKind() != "CustomResourceDefinition" {
		t.Fatalf("first object is a %s; CRDs must come first", objs[0].GetKind())
	}
	if got := Images(objs); !slices.Equal(got, []string{"ghcr.io/straddle-io/straddle-restore-helper:dev", "ghcr.io/straddle-io/straddle:dev"}) {
		t.Fatalf("images %v", got)
	}
}

func TestRenderAppliesEveryFlag(t *testing.T) {
	objs, err := Render(Options{
		Namespace: "backup-system", Image: "straddle/straddle:v1", RestoreHelperImage: "quay.io/acme/helper:v1",
		ImageRegistry: "registry.internal:5000/mirror/", DefaultVolumesToFsBackup: true, NodeAgentConcurrency: 4,
		HostPodsDir: "/var/snap/microk8s/common/var/lib/kubelet/pods", NodeAgentMemoryLimit: "1Gi",
		DefaultBackupTimeout: "6h", DefaultRestoreTimeout: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range Images(objs) {
		if !strings.HasPrefix(img, "registry.internal:5000/mirror/") {
			t.Errorf("image %s not moved to the offline registry", img)
		}
	}
	if got := Images(objs); !slices.Equal(got, []string{"registry.internal:5000/mirror/acme/helper:v1", "registry.internal:5000/mirror/straddle/straddle:v1"}) {
		t.Errorf("images %v", got)
	}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && ns != "backup-system" {
			t.Errorf("%s %s in namespace %s", o.GetKind(), o.GetName(), ns)
		}
	}
	find(t, objs, "Namespace", "backup-system")
	rb := find(t, objs, "ClusterRoleBinding", "straddle-node-agent")
	subjects, _, _ := unstructured.NestedSlice(rb.Object, "subjects")
	if subjects[0].(map[string]any)["namespace"] != "backup-system" {
		t.Errorf("binding subject %v", subjects)
	}
	var buf bytes.Buffer
	if err := YAML(&buf, objs); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"--default-volumes-to-fs-backup=true", "--concurrency=4", "path: /var/snap/microk8s/common/var/lib/kubelet/pods", "memory: 1Gi", "--namespace=backup-system",
		"--default-backup-timeout=6h", "--default-restore-timeout=0"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered YAML lacks %q", want)
		}
	}
	if strings.Count(out, "--concurrency=") != 1 {
		t.Error("--concurrency set twice")
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	for _, o := range []Options{{HostPodsDir: "relative/pods"}, {NodeAgentMemoryLimit: "lots"}, {NodeAgentConcurrency: -1},
		{DefaultBackupTimeout: "soon"}, {DefaultRestoreTimeout: "-1h"}} {
		if _, err := Render(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestImageRewrite(t *testing.T) {
	for _, c := range []struct{ ref, registry, want string }{
		{"ghcr.io/a/b:1", "", "ghcr.io/a/b:1"},
		{"ghcr.io/a/b:1", "mirror.local", "mirror.local/a/b:1"},
		{"localhost/b:1", "m:5000", "m:5000/b:1"},
		{"a/b:1", "m:5000/", "m:5000/a/b:1"},
		{"b:1", "m", "m/b:1"},
	} {
		if got := image(c.ref, "", c.registry); got != c.want {
			t.Errorf("image(%q, %q) = %q, want %q", c.ref, c.registry, got, c.want)
		}
	}
}

// A directory location must be visible, at its own path, to the controller and every node-agent.
func TestRenderMountsAFilesystemLocation(t *testing.T) {
	objs, err := Render(Options{HostPodsDir: "/var/lib/k0s/kubelet/pods", Storage: Storage{Provider: "filesystem", Path: "/srv/backups", RepositoryPassword: []byte("pw")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Deployment", "DaemonSet"} {
		name := map[string]string{"Deployment": "straddle-controller", "DaemonSet": "straddle-node-agent"}[kind]
		o := find(t, objs, kind, name)
		volumes, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
		var paths []string
		for _, v := range volumes {
			if hp, ok := v.(map[string]any)["hostPath"].(map[string]any); ok {
				paths = append(paths, v.(map[string]any)["name"].(string)+"="+hp["path"].(string))
			}
		}
		want := []string{"backup-location=/srv/backups"}
		if kind == "DaemonSet" {
			want = []string{"host-pods=/var/lib/k0s/kubelet/pods", "backup-location=/srv/backups"}
		}
		if !slices.Equal(paths, want) {
			t.Errorf("%s hostPath volumes %v, want %v", kind, paths, want)
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		mounts, _, _ := unstructured.NestedSlice(containers[0].(map[string]any), "volumeMounts")
		found := false
		for _, m := range mounts {
			if m.(map[string]any)["name"] == "backup-location" && m.(map[string]any)["mountPath"] == "/srv/backups" {
				found = true
			}
		}
		if !found {
			t.Errorf("%s does not mount the location at /srv/backups: %v", kind, mounts)
		}
	}
	objs, err = Render(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := YAML(&buf, objs); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "backup-location") {
		t.Error("an install without a directory location mounts one")
	}
}

// The Helm chart renders the manifests' flags in their order; a changed value must keep its place.
func TestSetFlagKeepsThePlace(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"node-agent", "--namespace=straddle", "--concurrency=2", "--x"}, []string{"node-agent", "--namespace=ns", "--concurrency=2", "--x"}},
		{[]string{"controller", "--x"}, []string{"controller", "--x", "--namespace=ns"}},
		{[]string{"a", "--namespace", "--namespace=old", "--x"}, []string{"a", "--namespace=ns", "--x"}},
	} {
		if got := setFlag(c.in, "--namespace", "ns"); !slices.Equal(got, c.want) {
			t.Errorf("setFlag(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
