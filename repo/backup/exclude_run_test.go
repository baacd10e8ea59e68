package backup_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/restore"
	"github.com/straddle-io/straddle/repo/storage"
)

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func listFiles(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			rel, _ := filepath.Rel(root, p)
			if d.IsDir() {
				rel += "/"
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestExcludedFilesAndDirectoriesAreLeftOut(t *testing.T) {
	src := t.TempDir()
	for rel, content := range map[string]string{
		"keep.txt":          "kept",
		"scratch.tmp":       "excluded by base name",
		"app/data.db":       "kept",
		"app/deep/x.tmp":    "excluded by base name at depth",
		"cache/a":           "excluded with its directory",
		"cache/sub/b":       "excluded with its directory",
		"app/cache/c":       "kept: cache/** is anchored at the root",
		"logs/today.gz":     "excluded by logs/*.gz",
		"logs/keep/old.gz":  "kept: * stays within one segment",
		"build/out.bin":     "excluded: build/ matches the directory",
		"notes/build":       "kept: build/ matches directories only",
		"unreadable/secret": "excluded: an excluded directory is not even listed",
	} {
		write(t, src, rel, content)
	}
	// An excluded directory that could not be read would be a warning if it were listed.
	if err := os.Chmod(filepath.Join(src, "unreadable"), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(src, "unreadable"), 0o755) })
	excludes := []string{"*.tmp", "cache/**", "logs/*.gz", "build/", "unreadable"}

	r, _ := repotest.New(t)
	var mu sync.Mutex
	var last backup.Progress
	res, err := backup.Run(context.Background(), r, backup.Options{Path: src, Excludes: excludes, ProgressInterval: time.Millisecond,
		Progress: func(p backup.Progress) { mu.Lock(); last = p; mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %v", res.Warnings)
	}
	if !slices.Equal(res.Snapshot.Excludes, excludes) {
		t.Errorf("snapshot excludes %v, want %v", res.Snapshot.Excludes, excludes)
	}
	// The totals scan honours excludes: it counts the kept files only.
	if !last.ScanDone || last.FilesTotal != 5 || last.FilesDone != 5 || last.BytesTotal != last.BytesDone {
		t.Errorf("final progress %+v, want 5 files whose bytes all done", last)
	}
	saved, err := r.LoadSnapshot(context.Background(), res.Snapshot.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(saved.Excludes, excludes) {
		t.Errorf("stored snapshot excludes %v, want %v", saved.Excludes, excludes)
	}

	dst := filepath.Join(t.TempDir(), "dst")
	if _, err := restore.Run(context.Background(), r, saved, restore.Options{Target: dst}); err != nil {
		t.Fatal(err)
	}
	want := []string{"app/", "app/cache/", "app/cache/c", "app/data.db", "app/deep/", "keep.txt", "logs/", "logs/keep/", "logs/keep/old.gz", "notes/", "notes/build"}
	if got := listFiles(t, dst); !slices.Equal(got, want) {
		t.Fatalf("restored %v\nwant     %v", got, want)
	}
	for _, rel := range []string{"keep.txt", "app/data.db", "app/cache/c", "logs/keep/old.gz", "notes/build"} {
		a, _ := os.ReadFile(filepath.Join(src, rel))
		b, _ := os.ReadFile(filepath.Join(dst, rel))
		if string(a) != string(b) {
			t.Errorf("%s restored as %q, want %q", rel, b, a)
		}
	}
}

func TestInvalidExcludeFailsBeforeTheBackup(t *testing.T) {
	src := t.TempDir()
	write(t, src, "f", "x")
	r, be := repotest.New(t)
	count := func() int {
		n := 0
		_ = be.List(context.Background(), "", func(storage.Info) error { n++; return nil })
		return n
	}
	before := count()
	_, err := backup.Run(context.Background(), r, backup.Options{Path: src, Excludes: []string{"ok", "[broken"}})
	if err == nil || !strings.Contains(err.Error(), `"[broken"`) {
		t.Fatalf("err = %v, want one naming the bad pattern", err)
	}
	if n := count(); n != before {
		t.Errorf("the failed backup stored %d objects", n-before)
	}
}
