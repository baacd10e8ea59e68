package main

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/straddle-io/straddle/deploy"
)

// renderFlags are the install settings shared by install, uninstall and images.
type renderFlags struct {
	deploy.Options
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
	fl.IntVar(&f.NodeAgentConcurrency, "node-agent-concurrency", 0, "volumes one node-agent works on at once (default 2)")
	fl.StringVar(&f.HostPodsDir, "host-pods-dir", "", "the kubelet's pods directory on the nodes (default /var/lib/kubelet/pods)")
	fl.StringVar(&f.NodeAgentCPURequest, "node-agent-cpu-request", "", "node-agent CPU request")
	fl.StringVar(&f.NodeAgentMemoryRequest, "node-agent-memory-request", "", "node-agent memory request")
	fl.StringVar(&f.NodeAgentMemoryLimit, "node-agent-memory-limit", "", "node-agent memory limit")
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
	objs, err := deploy.Render(o.Options)
	if err != nil {
		return err
	}
	if o.dryRun {
		return deploy.YAML(out, objs)
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	for _, obj := range objs {
		if err := cl.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("straddle-install"), client.ForceOwnership); err != nil {
			return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	fmt.Fprintf(out, "installed Straddle in namespace %s (%d objects applied)\n", o.Namespace, len(objs))
	return nil
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
	return cmd
}

func (o *imagesOptions) run(out io.Writer) error {
	objs, err := deploy.Render(o.Options)
	if err != nil {
		return err
	}
	for _, img := range deploy.Images(objs) {
		fmt.Fprintln(out, img)
	}
	return nil
}
