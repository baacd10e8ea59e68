package fs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/storagetest"
)

func TestConformance(t *testing.T) {
	be, err := Create(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Run(t, be)
}

func TestListSkipsTempFiles(t *testing.T) {
	dir := t.TempDir()
	be, _ := Open(dir)
	if err := os.MkdirAll(filepath.Join(dir, "index"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index", tempPrefix+"x"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = be.List(context.Background(), "index/", func(storage.Info) error { n++; return nil })
	if n != 0 {
		t.Fatalf("listed %d objects, want the temp file skipped", n)
	}
}

func TestOpenMissing(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "nope")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}
