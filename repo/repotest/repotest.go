// Package repotest gives tests a repository in one line, trees with every kind of file, and a deep comparison
// of two trees.
package repotest

import (
	"context"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

// Password is the password of repositories made here.
const Password = "repotest-password"

// New returns a fresh in-memory repository with a cheap KDF and small packs, its index loaded.
func New(t testing.TB) (*repo.Repository, *mem.Backend) {
	t.Helper()
	be := mem.New()
	return Init(t, be), be
}

// Init creates a repository with a cheap KDF and 1 MiB packs (so tests see many packs) in be.
func Init(t testing.TB, be storage.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Init(context.Background(), be, []byte(Password), repo.InitOptions{KDF: crypto.TestKDF, PackSize: 1 << 20})
	if err != nil {
		t.Fatalf("init repository: %v", err)
	}
	return r
}

// Reopen opens the repository in be again, as a new process would, with its index loaded.
func Reopen(t testing.TB, be storage.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, []byte(Password), repo.OpenOptions{})
	if err != nil {
		t.Fatalf("open repository: %v", err)
	}
	if err := r.LoadIndex(context.Background()); err != nil {
		t.Fatalf("load index: %v", err)
	}
	return r
}
