package repo_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

func openWith(t *testing.T, be storage.Backend, password string) *repo.Repository {
	t.Helper()
	r, err := repo.Open(ctx, be, []byte(password), repo.OpenOptions{})
	if err != nil {
		t.Fatalf("open with %q: %v", password, err)
	}
	return r
}

func TestAddedKeyOpensAndIsTheKeyInUse(t *testing.T) {
	r, be := repotest.New(t)
	first := r.KeyID()
	if first.IsNull() {
		t.Fatal("Init did not record the key it wrote")
	}
	second, err := r.AddKey(ctx, []byte("second"), crypto.TestKDF)
	if err != nil {
		t.Fatal(err)
	}
	if got := openWith(t, be, repotest.Password).KeyID(); got != first {
		t.Errorf("the first password opened key %s, want %s", got.Short(), first.Short())
	}
	r2 := openWith(t, be, "second")
	if r2.KeyID() != second {
		t.Errorf("the second password opened key %s, want %s", r2.KeyID().Short(), second.Short())
	}
	keys, err := r2.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("%d keys, want 2", len(keys))
	}
	for _, k := range keys {
		if k.Current != (k.ID == second) {
			t.Errorf("key %s: current %v", k.ID.Short(), k.Current)
		}
		if k.Created.IsZero() || k.Damaged != "" {
			t.Errorf("key %s: %+v", k.ID.Short(), k)
		}
	}
}

func TestRemoveKeyRefusesTheKeyInUseAndTheLastKey(t *testing.T) {
	r, be := repotest.New(t)
	only := r.KeyID()
	if err := r.RemoveKey(ctx, only); !errors.Is(err, repo.ErrLastKey) {
		t.Fatalf("removing the only key: %v", err)
	}
	second, err := r.AddKey(ctx, []byte("second"), crypto.TestKDF)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveKey(ctx, only); !errors.Is(err, repo.ErrKeyInUse) {
		t.Fatalf("removing the key in use: %v", err)
	}
	if err := r.RemoveKey(ctx, id.Random()); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("removing an unknown key: %v", err)
	}
	if err := r.RemoveKey(ctx, second); err != nil {
		t.Fatalf("removing the other key: %v", err)
	}
	if _, err := repo.Open(ctx, be, []byte("second"), repo.OpenOptions{}); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("a removed key still opens: %v", err)
	}
	openWith(t, be, repotest.Password)
}

func TestRemoveKeyNeedsAnotherKeyFileThatParses(t *testing.T) {
	r, be := repotest.New(t)
	second, err := r.AddKey(ctx, []byte("second"), crypto.TestKDF)
	if err != nil {
		t.Fatal(err)
	}
	// The key in use is damaged after opening: removing the second would leave nothing that opens.
	_ = be.Mutate("keys/"+r.KeyID().String(), func([]byte) []byte { return []byte("{") })
	if err := r.RemoveKey(ctx, second); !errors.Is(err, repo.ErrLastKey) {
		t.Fatalf("removing the only key that parses: %v", err)
	}
	openWith(t, be, "second")
	keys, err := r.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	damaged := 0
	for _, k := range keys {
		if k.Damaged != "" {
			damaged++
		}
	}
	if len(keys) != 2 || damaged != 1 {
		t.Fatalf("list with a damaged key: %+v", keys)
	}
}

func TestChangePassword(t *testing.T) {
	r, be := repotest.New(t)
	old := r.KeyID()
	newID, err := r.ChangePassword(ctx, []byte("new"), crypto.TestKDF)
	if err != nil {
		t.Fatal(err)
	}
	if r.KeyID() != newID || newID == old {
		t.Fatalf("key in use %s after the change, new key %s, old %s", r.KeyID().Short(), newID.Short(), old.Short())
	}
	if _, err := repo.Open(ctx, be, []byte(repotest.Password), repo.OpenOptions{}); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("the old password after the change: %v", err)
	}
	r2 := openWith(t, be, "new")
	if r2.KeyID() != newID || r2.Config().ID != r.Config().ID {
		t.Fatal("the new password opens something else")
	}
	if keys, _ := r2.ListKeys(ctx); len(keys) != 1 {
		t.Fatalf("%d keys after the change, want 1", len(keys))
	}
}

func TestFindKeyByPrefix(t *testing.T) {
	r, be := repotest.New(t)
	kid := r.KeyID()
	for _, ref := range []string{kid.String(), kid.String()[:4], kid.Short()} {
		if got, err := r.FindKey(ctx, ref); err != nil || got != kid {
			t.Errorf("FindKey(%s) = %s, %v", ref, got.Short(), err)
		}
	}
	if _, err := r.FindKey(ctx, "abc"); err == nil || errors.Is(err, repo.ErrNotFound) {
		t.Errorf("a three-digit prefix: %v", err)
	}
	if _, err := r.FindKey(ctx, "XYZW"); err == nil {
		t.Error("a non-hex reference was accepted")
	}
	missing := "0000"
	if strings.HasPrefix(kid.String(), missing) {
		missing = "ffff"
	}
	if _, err := r.FindKey(ctx, missing); !errors.Is(err, repo.ErrNotFound) {
		t.Errorf("an unknown prefix: %v", err)
	}
	// Two key files whose names share a prefix (copies of the real one, so both parse).
	buf, _ := storage.ReadAll(ctx, be, "keys/"+kid.String())
	for _, suffix := range []string{"1", "2"} {
		_ = storage.PutBytes(ctx, be, "keys/abcd"+strings.Repeat("0", 59)+suffix, buf)
	}
	if _, err := r.FindKey(ctx, "abcd"); !errors.Is(err, repo.ErrAmbiguous) {
		t.Errorf("an ambiguous prefix: %v", err)
	}
}

func TestOddKeyFileNamesDoNotBreakOpen(t *testing.T) {
	be := mem.New()
	repotest.Init(t, be)
	_ = storage.PutBytes(ctx, be, "keys/x", []byte("not a key"))
	openWith(t, be, repotest.Password)
	_, err := repo.Open(ctx, be, []byte("wrong"), repo.OpenOptions{})
	if !errors.Is(err, repo.ErrWrongPassword) || !strings.Contains(err.Error(), "damaged key files: x") {
		t.Fatalf("wrong password beside an oddly named key file: %v", err)
	}
}
