package bsl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/storage"
)

// RepositoryNamespaces lists the namespaces that have a repository in a location, given the location's root:
// every repositories/<namespace>/config object. It lists every object under repositories/, as object stores
// have no cheaper way to name folders; a rotation is rare enough to afford it.
func RepositoryNamespaces(ctx context.Context, root storage.Backend) ([]string, error) {
	var namespaces []string
	err := root.List(ctx, RepositoriesDir+"/", func(fi storage.Info) error {
		ns, rest, ok := strings.Cut(strings.TrimPrefix(fi.Name, RepositoriesDir+"/"), "/")
		if ok && rest == "config" {
			namespaces = append(namespaces, ns)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the repositories in %s: %w", root.Location(), err)
	}
	slices.Sort(namespaces)
	return slices.Compact(namespaces), nil
}

// AddPassword makes newPassword open the repository in be, which oldPassword opens. It can run again after
// any failure: when newPassword already opens the repository it adds nothing and reports false.
func AddPassword(ctx context.Context, be storage.Backend, oldPassword, newPassword []byte, kdf crypto.KDFParams) (added bool, err error) {
	if _, err := repo.Open(ctx, be, newPassword, repo.OpenOptions{}); err == nil {
		return false, nil
	} else if !errors.Is(err, repo.ErrWrongPassword) {
		return false, fmt.Errorf("open the repository at %s: %w", be.Location(), err)
	}
	r, err := repo.Open(ctx, be, oldPassword, repo.OpenOptions{})
	if errors.Is(err, repo.ErrWrongPassword) {
		return false, fmt.Errorf("neither the old nor the new password opens the repository at %s", be.Location())
	}
	if err != nil {
		return false, fmt.Errorf("open the repository at %s: %w", be.Location(), err)
	}
	if _, err := r.AddKey(ctx, newPassword, kdf); err != nil {
		return false, fmt.Errorf("add the new password's key to the repository at %s: %w", be.Location(), err)
	}
	return true, nil
}

// RemovePassword removes the key oldPassword opens from the repository in be, once newPassword opens it (its
// key is added first if it is missing: a repository created while the Secret changed). It can run again after
// any failure: when oldPassword opens nothing it removes nothing and reports false.
func RemovePassword(ctx context.Context, be storage.Backend, oldPassword, newPassword []byte, kdf crypto.KDFParams) (removed bool, err error) {
	if _, err := AddPassword(ctx, be, oldPassword, newPassword, kdf); err != nil {
		return false, err
	}
	newRepo, err := repo.Open(ctx, be, newPassword, repo.OpenOptions{})
	if err != nil {
		return false, fmt.Errorf("open the repository at %s with the new password: %w", be.Location(), err)
	}
	oldRepo, err := repo.Open(ctx, be, oldPassword, repo.OpenOptions{})
	if errors.Is(err, repo.ErrWrongPassword) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open the repository at %s with the old password: %w", be.Location(), err)
	}
	if oldRepo.KeyID() == newRepo.KeyID() {
		// One key file opens with both: the passwords are the same, and its key must stay.
		return false, nil
	}
	if err := newRepo.RemoveKey(ctx, oldRepo.KeyID()); err != nil {
		return false, fmt.Errorf("remove the old password's key from the repository at %s: %w", be.Location(), err)
	}
	return true, nil
}
