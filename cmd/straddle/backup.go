package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/deploy"
)

// backupFlags are the cluster flags every `straddle backup` command shares: Backups live in the namespace
// Straddle is installed in.
type backupFlags struct {
	clusterFlags
	namespace string
}

func (f *backupFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
	fl.StringVarP(&f.namespace, "namespace", "n", deploy.DefaultNamespace, "namespace Straddle is installed in")
}

// client talks to the cluster with Straddle's kinds known, unlike clusterFlags.client, which install uses
// with unstructured objects.
func (f *backupFlags) client() (client.Client, error) {
	cfg, err := f.restConfig()
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connect to the cluster: %w", err)
	}
	return cl, nil
}

func newBackupCmd() *cobra.Command {
	f := &backupFlags{}
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up pod volumes through the cluster: create, get, describe, logs, delete",
	}
	f.register(cmd)
	cmd.AddCommand(newBackupCreateCmd(f), newBackupGetCmd(f), newBackupDescribeCmd(f), newBackupLogsCmd(f), newBackupDeleteCmd(f))
	return cmd
}

// getBackup reads one Backup, turning "not found" into a sentence that says where it looked.
func getBackup(ctx context.Context, cl client.Client, namespace, name string) (*v1.Backup, error) {
	var b v1.Backup
	err := cl.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &b)
	if apierrors.IsNotFound(err) {
		return nil, &backupNotFoundError{namespace: namespace, name: name}
	}
	if err != nil {
		return nil, fmt.Errorf("read backup %s/%s: %w", namespace, name, installHint(err))
	}
	return &b, nil
}

// listVolumeBackups lists a backup's PodVolumeBackups (labelled with its name by the controller), sorted by
// namespace, pod and volume so every view shows them in the same order.
func listVolumeBackups(ctx context.Context, cl client.Client, b *v1.Backup) ([]v1.PodVolumeBackup, error) {
	var list v1.PodVolumeBackupList
	if err := cl.List(ctx, &list, client.InNamespace(b.Namespace), client.MatchingLabels{v1.BackupLabel: b.Name}); err != nil {
		return nil, fmt.Errorf("list the volume backups of backup %s/%s: %w", b.Namespace, b.Name, installHint(err))
	}
	pvbs := ownVolumeBackups(b, list.Items)
	sortVolumeBackups(pvbs)
	return pvbs, nil
}

// ownVolumeBackups drops the PodVolumeBackups owned by another Backup of the same name: one deleted and
// created again, whose volume backups the garbage collector has not removed yet.
func ownVolumeBackups(b *v1.Backup, pvbs []v1.PodVolumeBackup) []v1.PodVolumeBackup {
	own := pvbs[:0]
	for _, p := range pvbs {
		ok := true
		for _, ref := range p.OwnerReferences {
			if ref.Kind == "Backup" && ref.Name == b.Name && b.UID != "" && ref.UID != b.UID {
				ok = false
			}
		}
		if ok {
			own = append(own, p)
		}
	}
	return own
}

func sortVolumeBackups(pvbs []v1.PodVolumeBackup) {
	sort.Slice(pvbs, func(i, j int) bool { return volumeName(&pvbs[i]) < volumeName(&pvbs[j]) })
}

// volumeName names a pod volume as a user finds it: namespace/pod/volume.
func volumeName(p *v1.PodVolumeBackup) string {
	return p.Spec.Pod.Namespace + "/" + p.Spec.Pod.Name + "/" + p.Spec.Volume
}

// installHint adds what to do when the cluster does not serve Straddle's kinds: install it.
func installHint(err error) error {
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("%w; is Straddle installed (straddle install)?", err)
	}
	return err
}

// backupNotFoundError says a Backup is not there, and where it was looked for.
type backupNotFoundError struct{ namespace, name string }

func (e *backupNotFoundError) Error() string {
	return fmt.Sprintf("backup %q not found in namespace %s (straddle backup get lists them)", e.name, e.namespace)
}
