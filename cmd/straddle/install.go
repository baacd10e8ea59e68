package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/straddle-io/straddle/controller"
	"github.com/straddle-io/straddle/deploy"
)

// renderFlags are the install settings shared by install, uninstall and images.
type renderFlags struct {
	deploy.Options
	caCertFile, secretFile, passwordFile string
	// helperSecurityContextFile holds the restore helper's securityContext in YAML.
	helperSecurityContextFile string
}

func (f *renderFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.Namespace, "namespace", "n", deploy.DefaultNamespace, "namespace Straddle runs in")
	fl.StringVar(&f.Image, "image", "", "image of the controller and node-agent (default: this release's)")
	fl.StringVar(&f.RestoreHelperImage, "restore-helper-image", "", "image of the restore-wait init container (default: this release's)")
	fl.StringVar(&f.ImageRegistry, "image-registry", "", "pull every image from this registry instead (offline clusters)")
}

func (f *renderFlags) registerInstall(cmd *cobra.Command) {
	f.register(cmd)
	fl := cmd.Flags()
	fl.BoolVar(&f.DefaultVolumesToFsBackup, "default-volumes-to-fs-backup", false, "back up every pod volume unless excluded by annotation")
	fl.StringSliceVar(&f.DefaultExcludedVolumes, "default-excluded-volumes", nil,
		"volume names (comma-separated) not backed up under default-all unless a pod's backup-volumes annotation names them, e.g. istio-envoy,istio-data")
	fl.StringVar(&f.RestoreHelperRunAsUser, "restore-helper-run-as-user", "", "UID the restore-wait init container runs as (default 65532)")
	fl.StringVar(&f.RestoreHelperRunAsGroup, "restore-helper-run-as-group", "", "GID the restore-wait init container runs as (default: the image's)")
	fl.StringVar(&f.helperSecurityContextFile, "restore-helper-security-context-file", "",
		"YAML `file` with the restore-wait container's securityContext, replacing the restricted default")
	fl.StringSliceVar(&f.RestoreHelperImagePullSecrets, "restore-helper-image-pull-secrets", nil,
		"Secrets (comma-separated names, in each restored pod's namespace) to pull the restore helper image with")
	fl.BoolVar(&f.NodeAgentPrivileged, "node-agent-privileged", false,
		"run the node-agent privileged instead of with named capabilities (SELinux-enforcing hosts)")
	fl.StringVar(&f.DefaultBackupTimeout, "default-backup-timeout", "", "how long a Backup that sets no spec.timeout may run before its unfinished volumes fail (default 4h; 0: no bound)")
	fl.StringVar(&f.DefaultRestoreTimeout, "default-restore-timeout", "", "how long a Restore that sets no spec.timeout may run before its unfinished volumes fail (default 4h; 0: no bound)")
	fl.IntVar(&f.NodeAgentConcurrency, "node-agent-concurrency", 0, "volumes one node-agent works on at once (default 2)")
	fl.StringVar(&f.HostPodsDir, "host-pods-dir", "", "the kubelet's pods directory on the nodes (default /var/lib/kubelet/pods)")
	fl.StringVar(&f.NodeAgentCPURequest, "node-agent-cpu-request", "", "node-agent CPU request")
	fl.StringVar(&f.NodeAgentMemoryRequest, "node-agent-memory-request", "", "node-agent memory request")
	fl.StringVar(&f.NodeAgentMemoryLimit, "node-agent-memory-limit", "", "node-agent memory limit")
	fl.StringVar(&f.Storage.Provider, "provider", "", "create the default storage location: s3 or filesystem (none without it)")
	fl.StringVar(&f.Storage.Bucket, "bucket", "", "s3: bucket of the default storage location")
	fl.StringVar(&f.Storage.Prefix, "prefix", "", "s3: key prefix in the bucket")
	fl.StringVar(&f.Storage.URL, "s3-url", "", "s3: the server's URL, http(s)://host[:port]")
	fl.StringVar(&f.Storage.Region, "region", "", "s3: region (default us-east-1)")
	fl.BoolVar(&f.Storage.ForcePathStyle, "s3-force-path-style", true, "s3: address the bucket by path (host/bucket), as MinIO and most on-premises stores want")
	fl.StringVar(&f.caCertFile, "cacert", "", "s3: PEM `file` of the certificate authorities that sign the server's certificate")
	fl.StringVar(&f.secretFile, "secret-file", "", "s3: AWS credentials `file` ([default] aws_access_key_id, aws_secret_access_key) stored in a Secret")
	fl.StringVar(&f.Storage.Path, "path", "", "filesystem: the directory, mounted at the same path on every node")
	fl.StringVar(&f.passwordFile, "repository-password-file", "", "`file` with the password that seals the repositories' keys (default: a random one, kept in a Secret, with a line on how to save it)")
}

// readStorageFiles loads the files the storage flags name, and makes a random repository password when a
// location is asked for without one. It reports whether the password was generated.
func (f *renderFlags) readStorageFiles() (generated bool, err error) {
	var helperSecurityContext []byte
	for _, r := range []struct {
		file string
		dst  *[]byte
		what string
	}{{f.caCertFile, &f.Storage.CABundle, "CA bundle"}, {f.secretFile, &f.Storage.Credentials, "credentials file"}, {f.passwordFile, &f.Storage.RepositoryPassword, "repository password file"},
		{f.helperSecurityContextFile, &helperSecurityContext, "restore helper securityContext file"}} {
		if r.file == "" {
			continue
		}
		b, err := os.ReadFile(r.file)
		if err != nil {
			return false, fmt.Errorf("read the %s: %w", r.what, err)
		}
		*r.dst = b
	}
	f.RestoreHelperSecurityContext = string(helperSecurityContext)
	// Files written by editors and echo end in a newline that is not part of the password.
	f.Storage.RepositoryPassword = bytes.TrimRight(f.Storage.RepositoryPassword, "\r\n")
	if f.passwordFile != "" && len(f.Storage.RepositoryPassword) == 0 {
		return false, fmt.Errorf("repository password file %s is empty", f.passwordFile)
	}
	if f.Storage.Provider == "" || len(f.Storage.RepositoryPassword) > 0 {
		return false, nil
	}
	f.Storage.RepositoryPassword = newRandomPassword()
	return true, nil
}

// newRandomPassword is a repository password of 32 bytes from crypto/rand, as text that survives files,
// shells and Secrets.
func newRandomPassword() []byte {
	return []byte(base64.RawURLEncoding.EncodeToString(randomBytes(32)))
}

// passwordAdvice is the one line that says how to save the repository password held in Secret ns/name under
// key, and how a new cluster gets it; what says where the password came from.
func passwordAdvice(what, ns, name, key string) string {
	return fmt.Sprintf("%s in Secret %s/%s; save it now (kubectl -n %s get secret %s -o jsonpath='{.data.%s}' | base64 -d) and pass it with --repository-password-file to install a new cluster that must read these backups",
		what, ns, name, ns, name, key)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux; it panics itself if the kernel cannot answer
	return b
}

// clusterFlags locate the cluster.
type clusterFlags struct {
	kubeconfig string
}

func (f *clusterFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
}

// restConfig reads --kubeconfig, else $KUBECONFIG or ~/.kube/config, else the in-cluster service account.
func (f *clusterFlags) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to talk to: %w", err)
	}
	return cfg, nil
}

func (f *clusterFlags) client() (client.Client, error) {
	cfg, err := f.restConfig()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{})
}

type installOptions struct {
	renderFlags
	clusterFlags
	dryRun bool
	output string
}

func newInstallCmd() *cobra.Command {
	o := &installOptions{}
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install Straddle into a cluster (or print the manifests with --dry-run -o yaml)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.renderFlags.registerInstall(cmd)
	o.clusterFlags.register(cmd)
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "print what would be applied instead of applying it")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "with --dry-run: yaml")
	return cmd
}

func (o *installOptions) run(ctx context.Context, out io.Writer) error {
	if o.output != "" && (!o.dryRun || o.output != "yaml") {
		return fmt.Errorf("-o %s: only yaml, and only with --dry-run, is supported", o.output)
	}
	generated, err := o.readStorageFiles()
	if err != nil {
		return err
	}
	// Rendered first so a bad setting fails before anything touches the cluster.
	objs, err := deploy.Render(o.Options)
	if err != nil {
		return err
	}
	if err := checkRestoreHelper(objs); err != nil {
		return err
	}
	if o.dryRun {
		return deploy.YAML(out, objs)
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	kept, err := o.keepInstalledPassword(ctx, cl, generated)
	if err != nil {
		return err
	}
	keptGenerated := kept && generated
	generated = generated && !kept
	// Again: the password may now be the one the cluster already holds.
	objs, err = deploy.Render(o.Options)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if err := applyObject(ctx, cl, obj); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "installed Straddle in namespace %s (%d objects applied)\n", o.Namespace, len(objs))
	if keptGenerated {
		fmt.Fprintf(out, "kept the repository password Secret %s/%s already holds\n", o.Namespace, deploy.RepositoryPasswordSecret)
	}
	if generated {
		fmt.Fprintln(out, passwordAdvice("generated a random repository password", o.Namespace, deploy.RepositoryPasswordSecret, deploy.RepositoryPasswordKey))
	}
	return nil
}

// keepInstalledPassword makes an install over an existing one keep the repository password its Secret
// holds: a new random one would lock every repository, and another given one too (rotate changes it). It
// reports whether the password is the installed one.
func (o *installOptions) keepInstalledPassword(ctx context.Context, cl client.Client, generated bool) (bool, error) {
	if o.Storage.Provider == "" {
		return false, nil
	}
	sec := &unstructured.Unstructured{}
	sec.SetAPIVersion("v1")
	sec.SetKind("Secret")
	err := cl.Get(ctx, client.ObjectKey{Namespace: o.Namespace, Name: deploy.RepositoryPasswordSecret}, sec)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the repository password Secret %s/%s: %w", o.Namespace, deploy.RepositoryPasswordSecret, err)
	}
	b64, _, _ := unstructured.NestedString(sec.Object, "data", deploy.RepositoryPasswordKey)
	installed, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(installed) == 0 {
		return false, nil
	}
	switch {
	case generated:
		o.Storage.RepositoryPassword = installed
		return true, nil
	case !bytes.Equal(installed, o.Storage.RepositoryPassword):
		return false, fmt.Errorf("the Secret %s/%s already holds another repository password, which the repositories are sealed with: leave out --repository-password-file to keep it, or change it with straddle repository-password rotate",
			o.Namespace, deploy.RepositoryPasswordSecret)
	}
	return true, nil
}

// applyObject applies one object with server-side apply. A custom resource right after its CRD may find the
// kind not served yet; that is waited out for a bounded time.
func applyObject(ctx context.Context, cl client.Client, obj *unstructured.Unstructured) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("straddle-install"), client.ForceOwnership)
		if err == nil {
			return nil
		}
		if !meta.IsNoMatchError(err) || time.Now().After(deadline) {
			return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type uninstallOptions struct {
	renderFlags
	clusterFlags
	includeCRDs bool
}

func newUninstallCmd() *cobra.Command {
	o := &uninstallOptions{}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove Straddle from a cluster; CRDs and backups stay unless --include-crds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&o.Namespace, "namespace", "n", deploy.DefaultNamespace, "namespace Straddle runs in")
	o.clusterFlags.register(cmd)
	cmd.Flags().BoolVar(&o.includeCRDs, "include-crds", false, "also delete the CRDs, and with them every Backup, Schedule and Restore object")
	return cmd
}

func (o *uninstallOptions) run(ctx context.Context, out io.Writer) error {
	objs, err := deploy.Render(o.Options)
	if err != nil {
		return err
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	deleted := 0
	// Reverse order: workloads before their RBAC, the namespace and CRDs last. Each object is deleted
	// itself rather than left to the namespace's garbage collection.
	for _, obj := range slices.Backward(objs) {
		if obj.GetKind() == "CustomResourceDefinition" && !o.includeCRDs {
			continue
		}
		err := cl.Delete(ctx, obj.DeepCopyObject().(*unstructured.Unstructured))
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		deleted++
	}
	fmt.Fprintf(out, "uninstalled Straddle from namespace %s (%d objects deleted)\n", o.Namespace, deleted)
	return nil
}

type imagesOptions struct {
	renderFlags
}

func newImagesCmd() *cobra.Command {
	o := &imagesOptions{}
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Print every image an install uses, after --image-registry, to mirror into an offline registry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.OutOrStdout())
		},
	}
	o.renderFlags.register(cmd)
	cmd.AddCommand(newImagesPushCmd())
	return cmd
}

func (o *imagesOptions) run(out io.Writer) error {
	return o.runWith(o.ImageRegistry, out)
}

// runWith prints the images with the given registry, as push computes its refs.
func (o *imagesOptions) runWith(registry string, out io.Writer) error {
	opts := o.Options
	opts.ImageRegistry = registry
	objs, err := deploy.Render(opts)
	if err != nil {
		return err
	}
	for _, img := range deploy.Images(objs) {
		fmt.Fprintln(out, img)
	}
	return nil
}

// checkRestoreHelper reads the restore helper's ConfigMap among objs as the controller will, so a bad
// --restore-helper-* value is refused here rather than failing every restore later.
func checkRestoreHelper(objs []*unstructured.Unstructured) error {
	for _, obj := range objs {
		if obj.GetKind() != "ConfigMap" || obj.GetName() != controller.RestoreHelperConfigMap {
			continue
		}
		var cm corev1.ConfigMap
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &cm); err != nil {
			return fmt.Errorf("ConfigMap %s: %w", obj.GetName(), err)
		}
		if _, err := controller.RestoreHelperFromConfigMap(&cm); err != nil {
			return fmt.Errorf("restore helper settings: %w", err)
		}
	}
	return nil
}
