package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage/fs"
)

func listFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func TestRepoPruneEndToEnd(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "prune-test")
	base := t.TempDir()
	repoDir, src1, src2 := filepath.Join(base, "repo"), filepath.Join(base, "one"), filepath.Join(base, "two")
	repotest.MakeTree(t, src1, repotest.TreeOptions{Seed: 21, Files: 10, Big: 3 << 20})
	repotest.MakeTree(t, src2, repotest.TreeOptions{Seed: 22, Files: 10, Big: 1 << 20})
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	var first, second map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "backup", src1, "--repo", repoDir, "--json")), &first)
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "backup", src2, "--repo", repoDir, "--json")), &second)
	// Forget the first snapshot, as `repo forget` will.
	if err := os.Remove(filepath.Join(repoDir, "snapshots", first["snapshot_id"].(string))); err != nil {
		t.Fatal(err)
	}

	before := listFiles(t, repoDir)
	var dry map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "prune", "--repo", repoDir, "--dry-run", "--json")), &dry); err != nil {
		t.Fatal(err)
	}
	if dry["dry_run"] != true || dry["packs_deleted"].(float64) == 0 || dry["bytes_freed"].(float64) == 0 {
		t.Errorf("prune --dry-run --json: %v", dry)
	}
	if after := listFiles(t, repoDir); !slices.Equal(before, after) {
		t.Errorf("prune --dry-run changed the repository")
	}
	text := mustStraddle(t, "repo", "prune", "--repo", repoDir, "--repack-threshold", "0.3")
	for _, want := range []string{"1 snapshots", "deleted ", "freeing ", "holding the repository exclusively"} {
		if !strings.Contains(text, want) {
			t.Errorf("prune output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "deleted 0 packs") {
		t.Errorf("prune deleted nothing:\n%s", text)
	}
	var chk map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "check", "--repo", repoDir, "--read-data", "--json")), &chk)
	if chk["ok"] != true || chk["notes"] != nil {
		t.Errorf("check after prune: %v", chk)
	}
	target := filepath.Join(base, "restored")
	mustStraddle(t, "repo", "restore", second["snapshot_id"].(string), "--repo", repoDir, "--target", target)
	repotest.CompareTrees(t, src2, target)
	var again map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "prune", "--repo", repoDir, "--json")), &again)
	if again["packs_deleted"].(float64) != 0 {
		t.Errorf("a second prune deleted %v packs", again["packs_deleted"])
	}
	if locks, _ := os.ReadDir(filepath.Join(repoDir, "locks")); len(locks) != 0 {
		t.Errorf("%d locks left behind", len(locks))
	}
	for _, args := range [][]string{{"--repack-threshold", "0"}, {"--repack-threshold", "1.5"}, {"--max-wait", "0s"}} {
		if _, err := straddle(t, append([]string{"repo", "prune", "--repo", repoDir}, args...)...); err == nil {
			t.Errorf("prune %v succeeded", args)
		}
	}
}

// holdLock holds a lock on the repository in dir, as another process would, until the returned function runs.
func holdLock(t *testing.T, dir string, kind lock.Kind, purpose string, o lock.Options) func() {
	t.Helper()
	be, err := fs.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, []byte(os.Getenv("STRADDLE_PASSWORD")), repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	taken, stop, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- lock.WithLock(context.Background(), r, kind, purpose, o, func(context.Context) error {
			close(taken)
			<-stop
			return nil
		})
	}()
	select {
	case <-taken:
	case err := <-done:
		t.Fatal(err)
	}
	return func() { close(stop); <-done }
}

func TestRepoLocksAndUnlock(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "lock-test")
	base := t.TempDir()
	repoDir, src := filepath.Join(base, "repo"), filepath.Join(base, "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 23, Files: 3})
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	if out := mustStraddle(t, "repo", "unlock", "--repo", repoDir); !strings.Contains(out, "no locks") {
		t.Errorf("unlock of an unlocked repository: %q", out)
	}

	// A prune holding the repository exclusively stops backups, restores and checks, naming itself.
	release := holdLock(t, repoDir, lock.Exclusive, "prune", lock.Options{Host: "node-p", PID: 77})
	for _, args := range [][]string{
		{"repo", "backup", src, "--repo", repoDir, "--lock-wait", "0s"},
		{"repo", "check", "--repo", repoDir, "--lock-wait", "10ms"},
		{"repo", "restore", "latest", "--repo", repoDir, "--target", filepath.Join(base, "t"), "--lock-wait", "0s"},
	} {
		_, err := straddle(t, args...)
		if err == nil || !strings.Contains(err.Error(), "locked exclusively by prune on host node-p pid 77 since ") {
			t.Errorf("straddle %v beside an exclusive lock: %v", args[1], err)
		}
	}
	// The live lock is kept by unlock, and says why.
	if out := mustStraddle(t, "repo", "unlock", "--repo", repoDir); !strings.Contains(out, "kept exclusive lock") || !strings.Contains(out, "live: refreshed") {
		t.Errorf("unlock beside a live lock:\n%s", out)
	}
	release()
	mustStraddle(t, "repo", "backup", src, "--repo", repoDir)

	// A lock of a process of this host that has exited is stale: unlock removes it and keeps a live one.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	releaseDead := holdLock(t, repoDir, lock.Shared, "backup", lock.Options{PID: cmd.Process.Pid})
	defer releaseDead()
	releaseLive := holdLock(t, repoDir, lock.Shared, "restore", lock.Options{Host: "node-q", PID: 5})
	defer releaseLive()
	if out := mustStraddle(t, "repo", "unlock", "--repo", repoDir, "--dry-run"); !strings.Contains(out, "would remove shared lock") || len(listFiles(t, filepath.Join(repoDir, "locks"))) != 2 {
		t.Errorf("unlock --dry-run:\n%s", out)
	}
	out := mustStraddle(t, "repo", "unlock", "--repo", repoDir)
	if !strings.Contains(out, "removed shared lock") || !strings.Contains(out, "no longer runs on this host") || !strings.Contains(out, "kept shared lock") {
		t.Errorf("unlock:\n%s", out)
	}
	if n := len(listFiles(t, filepath.Join(repoDir, "locks"))); n != 1 {
		t.Errorf("%d locks after unlock, want the live one", n)
	}
	if out := mustStraddle(t, "repo", "unlock", "--repo", repoDir, "--remove-all"); !strings.Contains(out, "removed shared lock") {
		t.Errorf("unlock --remove-all:\n%s", out)
	}
	if n := len(listFiles(t, filepath.Join(repoDir, "locks"))); n != 0 {
		t.Errorf("%d locks after unlock --remove-all", n)
	}
}
