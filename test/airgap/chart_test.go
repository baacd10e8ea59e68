//go:build integration

package airgap_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"
)

// helmLabels are the labels the chart adds that `straddle install` does not.
var helmLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"}

// chartCase is one settings combination, given to the chart as values and to install as flags.
type chartCase struct {
	name    string
	values  []string
	flags   []string
	ns      string
	secrets map[string]string // file name → content, written to a temp folder; {dir} in values/flags names it
}

func chartCases() []chartCase {
	return []chartCase{
		{name: "defaults", ns: "straddle"},
		{
			name: "offline registry, s3, default-all",
			ns:   "straddle",
			values: []string{"imageRegistry=registry.internal:5000/mirror", "defaultVolumesToFsBackup=true",
				"storage.provider=s3", "storage.bucket=backups", "storage.url=https://s3.internal:9000/",
				"storage.prefix=/cluster-a/", "storage.region=eu-west-1", "defaultBackupTimeout=6h", "defaultRestoreTimeout=90m"},
			flags: []string{"--image-registry", "registry.internal:5000/mirror", "--default-volumes-to-fs-backup",
				"--provider", "s3", "--bucket", "backups", "--s3-url", "https://s3.internal:9000/",
				"--prefix", "/cluster-a/", "--region", "eu-west-1", "--default-backup-timeout", "6h", "--default-restore-timeout", "90m",
				"--secret-file", "{dir}/cloud", "--repository-password-file", "{dir}/password", "--cacert", "{dir}/ca.pem"},
			secrets: map[string]string{
				"cloud":    "[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n",
				"password": "s3cret",
				"ca.pem":   "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
			},
		},
		{
			name: "own namespace, filesystem, node-agent settings, image overrides",
			ns:   "backup-system",
			values: []string{"namespace=backup-system", "image=example.com/straddle:1.0",
				"restoreHelper.image=localhost/helper:1.0", "nodeAgent.concurrency=4",
				"nodeAgent.resources.requests.cpu=250m", "nodeAgent.resources.requests.memory=256Mi",
				"nodeAgent.resources.limits.memory=1Gi", "hostPodsDir=/var/snap/microk8s/common/var/lib/kubelet/pods",
				"storage.provider=filesystem", "storage.path=/mnt/backups", "storage.repositoryPassword=pw",
				"nodeAgent.privileged=true", "defaultExcludedVolumes={istio-envoy,istio-data}", "restoreHelper.runAsUser=0",
				"restoreHelper.runAsGroup=3000", "restoreHelper.imagePullSecrets={regcred,mirror}"},
			flags: []string{"--namespace", "backup-system", "--image", "example.com/straddle:1.0",
				"--restore-helper-image", "localhost/helper:1.0", "--node-agent-concurrency", "4",
				"--node-agent-cpu-request", "250m", "--node-agent-memory-request", "256Mi",
				"--node-agent-memory-limit", "1Gi", "--host-pods-dir", "/var/snap/microk8s/common/var/lib/kubelet/pods",
				"--provider", "filesystem", "--path", "/mnt/backups", "--repository-password-file", "{dir}/password",
				"--node-agent-privileged", "--default-excluded-volumes", "istio-envoy,istio-data", "--restore-helper-run-as-user", "0",
				"--restore-helper-run-as-group", "3000", "--restore-helper-image-pull-secrets", "regcred,mirror",
				"--restore-helper-security-context-file", "{dir}/sc.yaml"},
			secrets: map[string]string{"password": "pw\n", "sc.yaml": "runAsUser: 0\nrunAsNonRoot: false\n"},
		},
	}
}

// TestChartRendersWhatInstallRenders renders the chart with helm and `straddle install --dry-run -o yaml`
// with the same settings, compares them object by object, and has the API server accept the chart's
// objects with a server-side dry run.
func TestChartRendersWhatInstallRenders(t *testing.T) {
	helm := tool(t, "helm", "STRADDLE_HELM_BIN")
	cl := startAPIServer(t)
	for _, c := range chartCases() {
		t.Run(c.name, func(t *testing.T) {
			// Not t.TempDir(): helm splits --set-file on the commas of the subtest's name.
			dir, err := os.MkdirTemp("", "straddle-chart-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			args := []string{"template", "straddle", filepath.Join(root, "deploy", "helm", "straddle"), "--include-crds"}
			for _, v := range c.values {
				args = append(args, "--set", v)
			}
			for file, content := range c.secrets {
				if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				// The chart takes file contents as values, as `helm install --set-file` passes them.
				key := map[string]string{"cloud": "storage.credentials", "password": "storage.repositoryPassword", "ca.pem": "storage.caBundle", "sc.yaml": "restoreHelper.securityContext"}[file]
				if file == "password" && slices.ContainsFunc(c.values, func(v string) bool { return strings.HasPrefix(v, key+"=") }) {
					continue
				}
				args = append(args, "--set-file", key+"="+filepath.Join(dir, file))
			}
			cmd := exec.Command(helm, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			chartOut, err := cmd.Output()
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			flags := []string{"install", "--dry-run", "-o", "yaml"}
			for _, f := range c.flags {
				flags = append(flags, strings.ReplaceAll(f, "{dir}", dir))
			}
			installOut := straddle(t, flags...)

			chartObjs := decode(t, chartOut)
			installObjs := decode(t, []byte(installOut))
			compare(t, chartObjs, installObjs)
			dryRunApply(t, cl, c.ns, chartObjs)
		})
	}
}

// key names an object for the comparison.
func key(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s %s/%s", o.GetKind(), o.GetNamespace(), o.GetName())
}

func decode(t *testing.T, data []byte) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("decode: %v\n%s", err, data)
		}
		if len(u.Object) == 0 {
			continue
		}
		if _, dup := out[key(u)]; dup {
			t.Fatalf("%s rendered twice", key(u))
		}
		out[key(u)] = u
	}
	return out
}

// compare checks the chart's objects equal install's, apart from Helm's labels.
func compare(t *testing.T, chart, install map[string]*unstructured.Unstructured) {
	t.Helper()
	for k, c := range chart {
		labels := c.GetLabels()
		for _, l := range helmLabels {
			// Helm applies the crds/ folder as is: only templates carry its labels.
			if _, ok := labels[l]; !ok && c.GetKind() != "CustomResourceDefinition" {
				t.Errorf("chart's %s has no %s label", k, l)
			}
			delete(labels, l)
		}
		c = c.DeepCopy()
		if len(labels) == 0 {
			unstructured.RemoveNestedField(c.Object, "metadata", "labels")
		} else {
			c.SetLabels(labels)
		}
		i, ok := install[k]
		if !ok {
			t.Errorf("the chart renders %s, straddle install does not", k)
			continue
		}
		// Both through JSON, so numbers and empty values compare alike.
		if a, b := normalize(t, c), normalize(t, i); !reflect.DeepEqual(a, b) {
			ay, _ := yaml.Marshal(a)
			by, _ := yaml.Marshal(b)
			t.Errorf("%s differs\nchart:\n%s\ninstall:\n%s", k, ay, by)
		}
	}
	for k := range install {
		if _, ok := chart[k]; !ok {
			t.Errorf("straddle install renders %s, the chart does not", k)
		}
	}
}

func normalize(t *testing.T, o *unstructured.Unstructured) map[string]any {
	t.Helper()
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// startAPIServer starts kube-apiserver and etcd (envtest), with no CRDs: the chart's own are applied.
func startAPIServer(t *testing.T) client.Client {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin")
	}
	ctrllog.SetLogger(logr.Discard())
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
	return cl
}

// dryRunApply applies the CRDs and the namespace for real (a dry run of the rest needs both), then every
// object with a server-side dry run.
func dryRunApply(t *testing.T, cl client.Client, ns string, objs map[string]*unstructured.Unstructured) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	apply := func(o *unstructured.Unstructured, opts ...client.ApplyOption) error {
		opts = append(opts, client.FieldOwner("airgap-test"), client.ForceOwnership)
		return cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...)
	}
	for _, o := range objs {
		if o.GetKind() == "CustomResourceDefinition" || o.GetKind() == "Namespace" {
			if err := apply(o); err != nil {
				t.Fatalf("apply %s: %v", key(o), err)
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" && o.GetName() != ns {
			t.Errorf("namespace %s, want %s", o.GetName(), ns)
		}
		// A custom resource right after its CRD may find its kind not served yet.
		err := apply(o, client.DryRunAll)
		for deadline := time.Now().Add(30 * time.Second); meta.IsNoMatchError(err) && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			err = apply(o, client.DryRunAll)
		}
		if err != nil {
			t.Errorf("server-side dry run of %s: %v", key(o), err)
		}
	}
}

// TestChartRejectsBadValues: values.schema.json and the templates refuse what `straddle install` refuses.
func TestChartRejectsBadValues(t *testing.T) {
	helm := tool(t, "helm", "STRADDLE_HELM_BIN")
	for _, c := range []struct {
		values []string
		want   string
	}{
		{[]string{"storage.provider=gcs"}, "storage/provider"},
		{[]string{"nodeAgent.concurrency=0"}, "nodeAgent/concurrency"},
		{[]string{"hostPodsDir=relative"}, "hostPodsDir"},
		{[]string{"restoreHelper.runAsUser=-1"}, "restoreHelper/runAsUser"},
		{[]string{"restoreHelper.imagePullSecrets={Bad_Name}"}, "restoreHelper/imagePullSecrets"},
		{[]string{"defaultExcludedVolumes={Istio}"}, "defaultExcludedVolumes"},
		{[]string{"defaultBackupTimeout=soon"}, "defaultBackupTimeout"},
		{[]string{"storage.provider=s3", "storage.url=http://s3:9000", "storage.repositoryPassword=pw"}, "storage.bucket"},
		{[]string{"storage.provider=s3", "storage.bucket=b", "storage.url=http://s3:9000"}, "storage.repositoryPassword"},
		{[]string{"storage.provider=filesystem", "storage.repositoryPassword=pw"}, "storage.path"},
	} {
		args := []string{"template", "straddle", filepath.Join(root, "deploy", "helm", "straddle")}
		for _, v := range c.values {
			args = append(args, "--set", v)
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("helm template with %q: %v, want an error naming %s:\n%s", c.values, err, c.want, tail(string(out), 500))
		}
	}
}
