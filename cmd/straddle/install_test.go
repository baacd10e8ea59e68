package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	objs, err := deploy.Render(deploy.Options{Namespace: "ns", DefaultVolumesToFsBackup: true, NodeAgentConcurrency: 3, HostPodsDir: "/var/lib/k0s/kubelet/pods",
		DefaultExcludedVolumes: []string{"istio-envoy", "istio-data"}, NodeAgentPrivileged: true})
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

// nodeAgentSecurityContext is the node-agent container's securityContext in install's dry run with args.
func nodeAgentSecurityContext(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out := mustStraddle(t, append([]string{"install", "--dry-run", "-o", "yaml"}, args...)...)
	for doc := range strings.SplitSeq(out, "\n---\n") {
		var o unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &o.Object); err != nil {
			t.Fatal(err)
		}
		if o.GetKind() != "DaemonSet" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		sc, _ := containers[0].(map[string]any)["securityContext"].(map[string]any)
		return sc
	}
	t.Fatal("no DaemonSet in the dry run")
	return nil
}

// The node-agent runs as root with exactly the capabilities docs/install.md explains, not privileged, on a
// read-only root; --node-agent-privileged makes it privileged.
func TestInstallNodeAgentPrivileges(t *testing.T) {
	sc := nodeAgentSecurityContext(t)
	caps, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "add")
	drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop")
	if !slices.Equal(caps, []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "SETFCAP"}) || !slices.Equal(drop, []string{"ALL"}) {
		t.Errorf("capabilities add %q drop %q", caps, drop)
	}
	if sc["privileged"] != nil || sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false || fmt.Sprint(sc["runAsUser"]) != "0" {
		t.Errorf("securityContext %v", sc)
	}
	sc = nodeAgentSecurityContext(t, "--node-agent-privileged")
	if sc["privileged"] != true || sc["capabilities"] != nil || fmt.Sprint(sc["runAsUser"]) != "0" {
		t.Errorf("--node-agent-privileged: securityContext %v", sc)
	}
}

// The restore helper's settings land in its ConfigMap under the keys the controller reads; a bad one is
// refused by install, naming the ConfigMap key.
func TestInstallRestoreHelperSettings(t *testing.T) {
	scFile := filepath.Join(t.TempDir(), "sc.yaml")
	if err := os.WriteFile(scFile, []byte("runAsNonRoot: true\nreadOnlyRootFilesystem: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := mustStraddle(t, "install", "--dry-run", "-o", "yaml", "--restore-helper-run-as-user", "1000", "--restore-helper-run-as-group", "2000",
		"--restore-helper-security-context-file", scFile, "--restore-helper-image-pull-secrets", "regcred,mirror", "--default-excluded-volumes", "istio-envoy,istio-data")
	for _, want := range []string{"runAsUser: \"1000\"", "runAsGroup: \"2000\"", "imagePullSecrets: regcred,mirror",
		"securityContext: |\n    runAsNonRoot: true\n    readOnlyRootFilesystem: true", "--default-excluded-volumes=istio-envoy,istio-data"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q", want)
		}
	}
	for _, args := range [][]string{{"--restore-helper-run-as-user", "nobody"}, {"--restore-helper-image-pull-secrets", "Bad_Name"}} {
		_, err := straddle(t, append([]string{"install", "--dry-run", "-o", "yaml"}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "key "+strings.NewReplacer("--restore-helper-", "", "run-as-user", "runAsUser", "image-pull-secrets", "imagePullSecrets").Replace(args[0])) {
			t.Errorf("install %q: %v, want an error naming the ConfigMap key", args, err)
		}
	}
}
