package bsl

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/crypto"
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

// OpenRepository opens the repository of namespace's volumes in loc; with create, a missing repository is
// initialised first (only the controller creates repositories, so two node-agents never race to). The
// password is read from the Secret on every call, never kept: a rotation changes it.
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
		if err := addRotatingPasswords(ctx, secrets, loc, r, pw); err != nil {
			return nil, fmt.Errorf("the repository of namespace %s in %s is created, but: %w", namespace, be.Location(), err)
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

// addRotatingPasswords gives a repository just created with pw the keys of the other passwords its Secret
// holds now: a rotation that began, or switched the Secret, while this repository was being created has
// listed the repositories without it, and must still find the new password opens it.
func addRotatingPasswords(ctx context.Context, secrets client.Reader, loc *v1.BackupStorageLocation, r *repo.Repository, pw []byte) error {
	sec, key, err := PasswordSecret(ctx, secrets, loc)
	if err != nil {
		return err
	}
	for _, k := range []string{key, NextPasswordKey(key)} {
		other := sec.Data[k]
		if len(other) == 0 || bytes.Equal(other, pw) {
			continue
		}
		if _, err := r.AddKey(ctx, other, crypto.DefaultKDF); err != nil {
			return fmt.Errorf("add the key of the password under %q of Secret %s/%s: %w", k, sec.Namespace, sec.Name, err)
		}
	}
	return nil
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
