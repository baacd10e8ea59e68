package bsl

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo"
)

// Where things live inside a storage location (contract: a new cluster pointed at the same bucket, and
// `straddle repo … --repo <location>/repositories/<namespace>`, rely on these).
const (
	// RepositoriesDir holds one repository per namespace of backed-up volumes.
	RepositoriesDir = "repositories"
	// BackupsDir holds one folder per backup: its metadata, volume results and resources.
	BackupsDir = "backups"
)

// RepositoryPath is the path, inside a location, of the repository of the volumes of namespace.
func RepositoryPath(namespace string) string { return RepositoriesDir + "/" + namespace }

// BackupPath is the path, inside a location, of the folder of backup's metadata.
func BackupPath(backup string) string { return BackupsDir + "/" + backup }

// Password reads the repository password of a location from the Secret it names (in the location's
// namespace). Errors never carry the password.
func Password(ctx context.Context, secrets client.Reader, loc *v1.BackupStorageLocation) ([]byte, error) {
	sel := loc.Spec.RepositoryPasswordSecret
	if sel == nil || sel.Name == "" {
		return nil, fmt.Errorf("storage location %s names no repositoryPasswordSecret", loc.Name)
	}
	key := sel.Key
	if key == "" {
		key = "password"
	}
	var sec corev1.Secret
	if err := secrets.Get(ctx, client.ObjectKey{Namespace: loc.Namespace, Name: sel.Name}, &sec); err != nil {
		return nil, fmt.Errorf("read repository password Secret %s/%s: %w", loc.Namespace, sel.Name, err)
	}
	pw := sec.Data[key]
	if len(pw) == 0 {
		return nil, fmt.Errorf("repository password Secret %s/%s has no key %q, or it is empty", loc.Namespace, sel.Name, key)
	}
	return pw, nil
}

// OpenRepository opens the repository of namespace's volumes in loc; with create, a missing repository is
// initialised first (only the controller creates repositories, so two node-agents never race to).
func OpenRepository(ctx context.Context, secrets client.Reader, loc *v1.BackupStorageLocation, namespace string, create bool) (*repo.Repository, error) {
	pw, err := Password(ctx, secrets, loc)
	if err != nil {
		return nil, err
	}
	be, err := OpenStorage(ctx, secrets, loc, RepositoryPath(namespace))
	if err != nil {
		return nil, fmt.Errorf("open storage location %s: %w", loc.Name, err)
	}
	r, err := repo.Open(ctx, be, pw, repo.OpenOptions{})
	switch {
	case errors.Is(err, repo.ErrNoRepository) && create:
		r, err = repo.Init(ctx, be, pw, repo.InitOptions{})
		if err != nil {
			return nil, fmt.Errorf("create the repository of namespace %s in %s: %w", namespace, be.Location(), err)
		}
		return r, nil
	case errors.Is(err, repo.ErrNoRepository):
		return nil, fmt.Errorf("there is no repository of namespace %s in %s yet: %w", namespace, be.Location(), repo.ErrNoRepository)
	case errors.Is(err, repo.ErrWrongPassword):
		return nil, fmt.Errorf("the repository password in Secret %s/%s does not open the repository at %s", loc.Namespace, loc.Spec.RepositoryPasswordSecret.Name, be.Location())
	case err != nil:
		return nil, fmt.Errorf("open the repository at %s: %w", be.Location(), err)
	}
	return r, nil
}

// Tags every volume snapshot carries (contract: parents are found by them, and a user finds a pod's
// snapshots with `straddle repo snapshots` by them). The controller puts them in PodVolumeBackup.spec.tags;
// the node-agent records spec.tags in the snapshot unchanged.
const (
	TagBackup    = "backup"
	TagNamespace = "namespace"
	TagPod       = "pod"
	TagPodUID    = "pod-uid"
	TagVolume    = "volume"
	TagPVC       = "pvc"
)
