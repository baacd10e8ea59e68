package repo_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/restore"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/fs"
	"github.com/straddle-io/straddle/repo/storage/mem"
	"github.com/straddle-io/straddle/repo/tree"
)

var ctx = context.Background()

func TestOpenErrors(t *testing.T) {
	be := mem.New()
	if _, err := repo.Open(ctx, be, []byte("pw"), repo.OpenOptions{}); !errors.Is(err, repo.ErrNoRepository) {
		t.Fatalf("empty location: %v", err)
	}
	repotest.Init(t, be)
	if _, err := repo.Open(ctx, be, []byte("wrong"), repo.OpenOptions{}); !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := repo.Init(ctx, be, []byte("pw"), repo.InitOptions{KDF: crypto.TestKDF}); !errors.Is(err, repo.ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	_ = be.Mutate("config", func(b []byte) []byte { b[len(b)-1] ^= 1; return b })
	if _, err := repo.Open(ctx, be, []byte(repotest.Password), repo.OpenOptions{}); !errors.Is(err, repo.ErrCorrupt) {
		t.Fatalf("damaged config: %v", err)
	}
	_ = be.Mutate("config", func(b []byte) []byte { b[8] = 9; return b })
	if _, err := repo.Open(ctx, be, []byte(repotest.Password), repo.OpenOptions{}); err == nil {
		t.Fatal("future format version opened")
	}
}

func TestSecondKeyOpensTheSameRepository(t *testing.T) {
	r, be := repotest.New(t)
	if _, err := r.AddKey(ctx, []byte("second"), crypto.TestKDF); err != nil {
		t.Fatal(err)
	}
	r2, err := repo.Open(ctx, be, []byte("second"), repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Config().ID != r.Config().ID || r2.BlobID([]byte("x")) != r.BlobID([]byte("x")) {
		t.Fatal("the second key opens different master keys")
	}
}

func TestNothingIsStoredInPlaintext(t *testing.T) {
	dir := t.TempDir()
	be, err := fs.Create(filepath.Join(dir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	r := repotest.Init(t, be)
	src := filepath.Join(dir, "src")
	secret := bytes.Repeat([]byte("TOP-SECRET-PAYLOAD "), 1000)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "secret-file-name"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Run(ctx, r, backup.Options{Path: src, Host: "secret-host"}); err != nil {
		t.Fatal(err)
	}
	err = be.List(ctx, "", func(fi storage.Info) error {
		data, err := storage.ReadAll(ctx, be, fi.Name)
		if err != nil {
			return err
		}
		for _, word := range []string{"TOP-SECRET", "secret-file-name", "secret-host"} {
			if bytes.Contains(data, []byte(word)) {
				t.Errorf("%s contains %q in plaintext", fi.Name, word)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A crafted repository (someone with the key, or a bug) holds a tree whose names try to escape the target.
func TestCraftedTreeCannotEscapeTarget(t *testing.T) {
	for _, name := range []string{"..", "../escaped", "/etc/escaped", "a/../../escaped", "."} {
		t.Run(name, func(t *testing.T) {
			r, _ := repotest.New(t)
			var treeID id.ID
			_, err := r.WithWriter(ctx, repo.WriterOptions{}, func(ctx context.Context, w *repo.Writer) error {
				content, _, err := w.SaveBlob(ctx, pack.DataBlob, []byte("escaped!"))
				if err != nil {
					return err
				}
				bad := tree.Tree{Nodes: []tree.Node{{Name: name, Type: tree.File, Mode: 0o644, Size: 8, Content: []id.ID{content}}}}
				treeID, _, err = w.SaveBlob(ctx, pack.TreeBlob, bad.Encode())
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			snap := &snapshot.Snapshot{Tree: treeID}
			base := t.TempDir()
			target := filepath.Join(base, "a", "b", "target")
			_, err = restore.Run(ctx, r, snap, restore.Options{Target: target})
			if err == nil {
				t.Fatal("restore of a tree with an escaping name succeeded")
			}
			if !errors.Is(err, repo.ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
			_ = filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() {
					t.Errorf("restore wrote %s", p)
				}
				return nil
			})
		})
	}
}

func TestCheckpointIndexesStoredPacksOfAFailedSession(t *testing.T) {
	r, be := repotest.New(t)
	boom := errors.New("killed")
	data := repotest.RandomData(rand.New(rand.NewPCG(1, 1)), 3<<20)
	_, err := r.WithWriter(ctx, repo.WriterOptions{}, func(ctx context.Context, w *repo.Writer) error {
		for off := 0; off < len(data); off += 256 << 10 {
			if _, _, err := w.SaveBlob(ctx, pack.DataBlob, data[off:off+256<<10]); err != nil {
				return err
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	r2 := repotest.Reopen(t, be)
	if n := r2.Index().Len(pack.DataBlob); n < 8 {
		t.Fatalf("after a failed session %d blobs are indexed; the packs it stored should be", n)
	}
}

func TestPeriodicCheckpointIndexesPacksDuringTheSession(t *testing.T) {
	r, be := repotest.New(t)
	data := repotest.RandomData(rand.New(rand.NewPCG(2, 2)), 3<<20)
	_, err := r.WithWriter(ctx, repo.WriterOptions{CheckpointInterval: 5 * time.Millisecond}, func(ctx context.Context, w *repo.Writer) error {
		for off := 0; off < len(data); off += 256 << 10 {
			if _, _, err := w.SaveBlob(ctx, pack.DataBlob, data[off:off+256<<10]); err != nil {
				return err
			}
		}
		// Packs are stored as they fill; wait for a checkpoint to index them while the session is open.
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			n := 0
			_ = be.List(ctx, "index/", func(storage.Info) error { n++; return nil })
			if n > 0 {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		return errors.New("no index checkpoint was written during the session")
	})
	if err != nil {
		t.Fatal(err)
	}
}
