package bsl

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/fs"
)

// prefixed opens the folder sub of a filesystem location's root, as OpenStorage does.
func prefixed(t *testing.T, root, sub string) storage.Backend {
	t.Helper()
	dir := filepath.Join(root, filepath.FromSlash(sub))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	be, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestRotationSteps(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	root := prefixed(t, dir, "")
	oldPw, newPw := []byte("old password"), []byte("new password")
	for _, ns := range []string{"shop", "db"} {
		if _, err := repo.Init(ctx, prefixed(t, dir, RepositoryPath(ns)), oldPw, repo.InitOptions{KDF: crypto.TestKDF}); err != nil {
			t.Fatal(err)
		}
	}
	// Something that is not a repository: a folder without a config, and a backup's metadata.
	if err := storage.PutBytes(ctx, root, "repositories/half/keys/x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := storage.PutBytes(ctx, root, "backups/b1/backup.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	namespaces, err := RepositoryNamespaces(ctx, root)
	if err != nil || !slices.Equal(namespaces, []string{"db", "shop"}) {
		t.Fatalf("RepositoryNamespaces = %v, %v", namespaces, err)
	}
	opens := func(ns string, pw []byte) bool {
		_, err := repo.Open(ctx, prefixed(t, dir, RepositoryPath(ns)), pw, repo.OpenOptions{})
		if err != nil && !errors.Is(err, repo.ErrWrongPassword) {
			t.Fatal(err)
		}
		return err == nil
	}
	for _, ns := range namespaces {
		be := prefixed(t, dir, RepositoryPath(ns))
		for i, want := range []bool{true, false} { // again: nothing more to add
			added, err := AddPassword(ctx, be, oldPw, newPw, crypto.TestKDF)
			if err != nil || added != want {
				t.Fatalf("%s: AddPassword #%d = %v, %v; want %v", ns, i+1, added, err, want)
			}
		}
		if !opens(ns, oldPw) || !opens(ns, newPw) {
			t.Fatalf("%s: after adding, both passwords must open it", ns)
		}
		for i, want := range []bool{true, false} { // again: nothing more to remove
			removed, err := RemovePassword(ctx, be, oldPw, newPw, crypto.TestKDF)
			if err != nil || removed != want {
				t.Fatalf("%s: RemovePassword #%d = %v, %v; want %v", ns, i+1, removed, err, want)
			}
		}
		if opens(ns, oldPw) || !opens(ns, newPw) {
			t.Fatalf("%s: after removing, only the new password may open it", ns)
		}
	}

	// A repository created with the old password after the keys were added (the Secret changed meanwhile)
	// gets the new key at removal time, then loses the old one.
	late := prefixed(t, dir, RepositoryPath("late"))
	if _, err := repo.Init(ctx, late, oldPw, repo.InitOptions{KDF: crypto.TestKDF}); err != nil {
		t.Fatal(err)
	}
	if removed, err := RemovePassword(ctx, late, oldPw, newPw, crypto.TestKDF); err != nil || !removed {
		t.Fatalf("RemovePassword of a late repository = %v, %v", removed, err)
	}
	if opens("late", oldPw) || !opens("late", newPw) {
		t.Fatal("the late repository must open with the new password only")
	}

	// The same password as old and new: its key stays.
	if removed, err := RemovePassword(ctx, late, newPw, newPw, crypto.TestKDF); err != nil || removed || !opens("late", newPw) {
		t.Fatalf("RemovePassword(same, same) = %v, %v; the key must stay", removed, err)
	}

	// Neither password opens it: a sentence, not a panic, and no password in it.
	_, err = AddPassword(ctx, late, []byte("wrong-1"), []byte("wrong-2"), crypto.TestKDF)
	if err == nil || !strings.Contains(err.Error(), "neither the old nor the new password opens") || strings.Contains(err.Error(), "wrong-") {
		t.Fatalf("AddPassword with two wrong passwords: %v", err)
	}
}
