package restore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/restore"
	"github.com/straddle-io/straddle/repo/snapshot"
)

func runBackup(t *testing.T, r *repo.Repository, dir string, parent *snapshot.Snapshot) *backup.Result {
	t.Helper()
	res, err := backup.Run(context.Background(), r, backup.Options{Path: dir, Host: "test", Parent: parent})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("unexpected warning: %s", w)
	}
	return res
}

func runRestore(t *testing.T, r *repo.Repository, snap *snapshot.Snapshot, target string) *restore.Result {
	t.Helper()
	res, err := restore.Run(context.Background(), r, snap, restore.Options{Target: target})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return res
}

func TestRoundTripEveryKindOfFile(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 1, Files: 60, Big: 5 << 20, Sparse: 64 << 20})
	r, be := repotest.New(t)
	res := runBackup(t, r, src, nil)
	if res.Summary.FilesNew == 0 || res.Summary.Dirs < 5 {
		t.Fatalf("summary %+v", res.Summary)
	}
	// A fresh process: everything must come from storage.
	r2 := repotest.Reopen(t, be)
	dst := filepath.Join(t.TempDir(), "dst")
	runRestore(t, r2, res.Snapshot, dst)
	repotest.CompareTrees(t, src, dst)

	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dst, "sparse.img"), &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > 8<<20 {
		t.Errorf("sparse file of 64 MiB uses %d bytes on disk after restore: holes were filled", used)
	}
}

func TestRestoreIntoExistingTargetDoesNotFollowSymlinks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 2, Files: 5})
	r, _ := repotest.New(t)
	res := runBackup(t, r, src, nil)

	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	// The target already holds symlinks where the snapshot has a file and a directory.
	if err := os.Symlink(victim, filepath.Join(dst, "one-byte")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dst, "a")); err != nil {
		t.Fatal(err)
	}
	runRestore(t, r, res.Snapshot, dst)
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Fatalf("restore wrote through a symlink: victim now %q", b)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Fatalf("restore wrote %d entries outside the target", len(entries)-1)
	}
	repotest.CompareTrees(t, src, dst)
}

func TestDedupAndIncremental(t *testing.T) {
	base := t.TempDir()
	src := filepath.Join(base, "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 3, Files: 40, Big: 3 << 20})
	r, be := repotest.New(t)
	first := runBackup(t, r, src, nil)

	// A copy of the tree elsewhere adds almost nothing: only tree blobs.
	cp := filepath.Join(base, "copy")
	if err := os.CopyFS(cp, os.DirFS(src)); err != nil {
		// CopyFS does not copy fifos or symlinks everywhere; copy the data that matters.
		t.Logf("copy: %v", err)
	}
	again := runBackup(t, r, cp, nil)
	if again.Summary.BytesAdded > first.Summary.BytesAdded/20 {
		t.Errorf("backing up a copy added %d bytes of %d: dedup is not working", again.Summary.BytesAdded, first.Summary.BytesAdded)
	}

	// Unchanged incremental: nothing read.
	inc := runBackup(t, r, src, first.Snapshot)
	if inc.Summary.BytesRead != 0 || inc.Summary.FilesNew+inc.Summary.FilesChanged != 0 {
		t.Errorf("unchanged incremental read %d bytes, %d new, %d changed files", inc.Summary.BytesRead, inc.Summary.FilesNew, inc.Summary.FilesChanged)
	}
	if inc.Summary.FilesUnmodified != first.Summary.FilesNew {
		t.Errorf("unmodified %d, want %d", inc.Summary.FilesUnmodified, first.Summary.FilesNew)
	}
	if inc.Snapshot.Tree != first.Snapshot.Tree {
		t.Error("unchanged tree got a different root tree ID")
	}

	// Change one file, add one: only those are read.
	if err := os.WriteFile(filepath.Join(src, "a", "f0001"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "new-file"), []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Metadata-only changes: an xattr and a symlink's target. The parent's copies must not be reused.
	_ = unix.Setxattr(filepath.Join(src, "one-byte"), "user.straddle", []byte("changed value"), 0)
	_ = os.Remove(filepath.Join(src, "link-inside"))
	if err := os.Symlink("exec.sh", filepath.Join(src, "link-inside")); err != nil {
		t.Fatal(err)
	}
	changed := runBackup(t, r, src, inc.Snapshot)
	// one-byte's xattr change updates its ctime, so it is read again (1 byte).
	if changed.Summary.FilesChanged < 1 || changed.Summary.FilesNew != 1 || changed.Summary.BytesRead > uint64(len("changed")+len("new")+3) {
		t.Errorf("changed incremental: %+v", changed.Summary)
	}
	r2 := repotest.Reopen(t, be)
	for _, s := range []*snapshot.Snapshot{first.Snapshot, changed.Snapshot} {
		dst := filepath.Join(t.TempDir(), "dst")
		runRestore(t, r2, s, dst)
		if s == changed.Snapshot {
			repotest.CompareTrees(t, src, dst)
		} else if b, _ := os.ReadFile(filepath.Join(dst, "a", "f0001")); string(b) == "changed" {
			t.Error("the first snapshot restored the later content")
		}
	}
}

func TestIncludeRestoresOnlyThosePaths(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 4, Files: 20})
	r, _ := repotest.New(t)
	res := runBackup(t, r, src, nil)
	dst := t.TempDir()
	inc, err := restore.CleanInclude("a/b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restore.Run(context.Background(), r, res.Snapshot, restore.Options{Target: dst, Include: []string{inc, "one-byte"}}); err != nil {
		t.Fatal(err)
	}
	got := repotest.Snapshot(t, dst)
	for rel := range got {
		if rel != "." && rel != "a" && rel != "one-byte" && rel != "a/b" && !strings.HasPrefix(rel, "a/b/") {
			t.Errorf("%q restored but not included", rel)
		}
	}
	if _, ok := got["a/b/f0002"]; !ok {
		t.Error("a/b/f0002 not restored")
	}
	if _, err := restore.CleanInclude("../etc"); err == nil {
		t.Error("include with .. accepted")
	}
}

func TestRestoreFailsLoudlyOnDamage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 5, Files: 30, Big: 4 << 20})
	for _, damage := range []string{"flip", "truncate", "delete"} {
		t.Run(damage, func(t *testing.T) {
			r, be := repotest.New(t)
			res := runBackup(t, r, src, nil)
			packs, err := r.ListPacks(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			// Damage every data pack, so whatever the restore reads first is bad.
			for p := range packs {
				name := pack.Name(p)
				switch damage {
				case "flip":
					_ = be.Mutate(name, func(b []byte) []byte { b[len(b)/3] ^= 0x40; return b })
				case "truncate":
					_ = be.Mutate(name, func(b []byte) []byte { return b[:len(b)/2] })
				case "delete":
					_ = be.Delete(context.Background(), name)
				}
			}
			r2, err := repo.Open(context.Background(), be, []byte(repotest.Password), repo.OpenOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := r2.LoadIndex(context.Background()); err != nil {
				t.Fatal(err)
			}
			_, err = restore.Run(context.Background(), r2, res.Snapshot, restore.Options{Target: t.TempDir()})
			if err == nil {
				t.Fatal("restore from a damaged repository succeeded")
			}
			if !errors.Is(err, repo.ErrCorrupt) && !errors.Is(err, repo.ErrNotFound) {
				t.Fatalf("err = %v, want ErrCorrupt or ErrNotFound", err)
			}
			if msg := err.Error(); strings.Contains(msg, "\n") || !strings.Contains(msg, "restore ") && !strings.Contains(msg, "load directory") {
				t.Errorf("error does not name what failed: %v", err)
			}
		})
	}
}
