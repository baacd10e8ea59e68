package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/straddle-io/straddle/controller"
	"github.com/straddle-io/straddle/deploy"
)

// Every flag the install puts into the controller's and node-agent's args must be one the servers take: an
// unknown flag is a crash loop in the cluster, which no test of the manifests alone would see.
func TestRenderedServerArgsAreAcceptedByTheServers(t *testing.T) {
	objs, err := deploy.Render(deploy.Options{Namespace: "ns", DefaultVolumesToFsBackup: true, NodeAgentConcurrency: 3, HostPodsDir: "/var/lib/k0s/kubelet/pods"})
	if err != nil {
		t.Fatal(err)
	}
	servers := map[string]func() *cobra.Command{"Deployment": newControllerCmd, "DaemonSet": newNodeAgentCmd}
	seen := 0
	for _, o := range objs {
		newCmd, ok := servers[o.GetKind()]
		if !ok {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
			cmd := newCmd()
			if len(args) == 0 || args[0] != cmd.Name() {
				t.Fatalf("%s %s runs %v, want the %s command first", o.GetKind(), o.GetName(), args, cmd.Name())
			}
			if err := cmd.ParseFlags(args[1:]); err != nil {
				t.Errorf("%s %s: straddle %s rejects its args %v: %v", o.GetKind(), o.GetName(), cmd.Name(), args, err)
			}
			seen++
		}
	}
	if seen != 2 {
		t.Fatalf("checked %d server containers, want the controller and the node-agent", seen)
	}
}

func TestInstallDryRunRendersTheStorageLocation(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "credentials")
	_ = os.WriteFile(creds, []byte("[default]\naws_access_key_id=AKID\naws_secret_access_key=SECRETVALUE\n"), 0o600)
	pw := filepath.Join(dir, "pw")
	_ = os.WriteFile(pw, []byte("correct horse\n"), 0o600)

	out := mustStraddle(t, "install", "--dry-run", "-o", "yaml", "--provider", "s3", "--bucket", "backups", "--prefix", "team-a",
		"--s3-url", "https://minio.internal:9000", "--secret-file", creds, "--repository-password-file", pw)
	for _, want := range []string{"kind: BackupStorageLocation", "bucket: backups", "endpoint: https://minio.internal:9000", "forcePathStyle: true",
		"name: " + deploy.CredentialsSecretName, "name: " + deploy.RepositoryPasswordSecret} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
	// Secrets travel base64-encoded, never as plain text in the YAML.
	if strings.Contains(out, "SECRETVALUE") || strings.Contains(out, "correct horse") {
		t.Error("dry run shows a secret in plain text")
	}

	// Without a password file, each install makes its own random password.
	var first string
	for range 2 {
		out := mustStraddle(t, "install", "--dry-run", "-o", "yaml", "--provider", "filesystem", "--path", "/srv/backups")
		i := strings.Index(out, deploy.RepositoryPasswordKey+": ")
		if i < 0 {
			t.Fatalf("no password in %s", out)
		}
		pw := strings.Fields(out[i:])[1]
		if len(pw) < 40 || pw == first {
			t.Fatalf("generated password %q (before: %q): want a long random one each time", pw, first)
		}
		first = pw
	}

	for args, want := range map[string]string{
		"--provider s3 --s3-url https://h":               "needs --bucket",
		"--provider s3 --bucket b --s3-url ftp://h":      "needs --s3-url",
		"--provider filesystem --path relative":          "absolute directory",
		"--provider gcs":                                 "unknown provider",
		"--bucket b":                                     "without a provider",
		"--provider s3 --bucket b --s3-url https://h/x/": "needs --s3-url",
	} {
		_, err := straddle(t, append([]string{"install", "--dry-run", "-o", "yaml"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("install %s: %v, want an error saying %q", args, err, want)
		}
	}
}

// The restore webhook's objects come with the install, pointed at the install namespace, and agree with the
// names the controller uses.
func TestInstallDryRunRendersTheRestoreWebhook(t *testing.T) {
	out := mustStraddle(t, "install", "--dry-run", "-o", "yaml", "--namespace", "backup-system")
	var objs []map[string]any
	for _, doc := range strings.Split(out, "\n---\n") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	find := func(kind, name string) *unstructured.Unstructured {
		for _, o := range objs {
			u := &unstructured.Unstructured{Object: o}
			if u.GetKind() == kind && u.GetName() == name {
				return u
			}
		}
		t.Fatalf("dry run has no %s %s", kind, name)
		return nil
	}
	mwc := find("MutatingWebhookConfiguration", controller.RestoreWaitWebhookConfiguration)
	hooks, _, _ := unstructured.NestedSlice(mwc.Object, "webhooks")
	if len(hooks) != 1 {
		t.Fatalf("webhooks %v", hooks)
	}
	h := hooks[0].(map[string]any)
	svc, _, _ := unstructured.NestedMap(h, "clientConfig", "service")
	if svc["name"] != controller.WebhookServiceName || svc["namespace"] != "backup-system" || svc["path"] != controller.RestoreWaitWebhookPath {
		t.Errorf("webhook calls %v", svc)
	}
	if key, _, _ := unstructured.NestedSlice(h, "namespaceSelector", "matchExpressions"); len(key) != 1 || key[0].(map[string]any)["key"] != controller.RestoringLabel {
		t.Errorf("namespace selector %v, want %s", key, controller.RestoringLabel)
	}
	if h["failurePolicy"] != "Fail" || h["sideEffects"] != "None" || h["timeoutSeconds"] != float64(10) {
		t.Errorf("webhook %v", h)
	}
	s := find("Service", controller.WebhookServiceName)
	if s.GetNamespace() != "backup-system" {
		t.Errorf("service in %s", s.GetNamespace())
	}
	for _, want := range []string{"--webhook-port=9443", "containerPort: 9443", "mutatingwebhookconfigurations", "straddle-webhook-tls"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
}
