package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/straddle-io/straddle/repo/repotest"
)

// straddle runs the CLI in-process and returns stdout and the error main would print.
func straddle(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func mustStraddle(t *testing.T, args ...string) string {
	t.Helper()
	out, err := straddle(t, args...)
	if err != nil {
		t.Fatalf("straddle %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func TestRepoCommandsEndToEnd(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "cli-test")
	base := t.TempDir()
	repoDir, src := filepath.Join(base, "repo"), filepath.Join(base, "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 11, Files: 30, Big: 2 << 20})
	mustStraddle(t, "repo", "init", "--repo", "file://"+repoDir)

	var first map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "backup", src, "--repo", repoDir, "--host", "node-a", "--tag", "pod=db-0", "--json")), &first); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"snapshot_id", "files_new", "files_changed", "files_unmodified", "dirs", "bytes_read", "bytes_added", "bytes_stored", "duration_seconds", "storage_retries"} {
		if _, ok := first[key]; !ok {
			t.Errorf("backup --json lacks %q: %v", key, first)
		}
	}
	if first["files_new"].(float64) == 0 || first["bytes_stored"].(float64) == 0 {
		t.Errorf("first backup stored nothing: %v", first)
	}

	// The second backup of the same host and path picks the first as parent without being told.
	var second map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "backup", src, "--repo", repoDir, "--host", "node-a", "--json")), &second)
	if second["parent"] != first["snapshot_id"] || second["bytes_read"].(float64) != 0 {
		t.Errorf("unchanged incremental: parent %v (want %v), bytes_read %v", second["parent"], first["snapshot_id"], second["bytes_read"])
	}
	// A symlink to the same directory is the same path, so it finds the same parent.
	link := filepath.Join(base, "link-to-src")
	if err := os.Symlink(src, link); err != nil {
		t.Fatal(err)
	}
	var viaLink map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "backup", link, "--repo", repoDir, "--host", "node-a", "--json")), &viaLink)
	if viaLink["parent"] != second["snapshot_id"] || viaLink["bytes_read"].(float64) != 0 {
		t.Errorf("backup through a symlink: parent %v, bytes_read %v", viaLink["parent"], viaLink["bytes_read"])
	}
	// Another host does not.
	var other map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "backup", src, "--repo", repoDir, "--host", "node-b", "--json")), &other)
	if _, ok := other["parent"]; ok {
		t.Errorf("a backup from another host used parent %v", other["parent"])
	}

	var snaps []map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "snapshots", "--repo", repoDir, "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 4 {
		t.Fatalf("%d snapshots, want 4", len(snaps))
	}
	for _, key := range []string{"id", "time", "host", "paths", "tags", "parent"} {
		if _, ok := snaps[1][key]; !ok {
			t.Errorf("snapshots --json entry lacks %q: %v", key, snaps[1])
		}
	}
	if snaps[0]["tags"].(map[string]any)["pod"] != "db-0" {
		t.Errorf("tags not recorded: %v", snaps[0]["tags"])
	}
	if table := mustStraddle(t, "repo", "snapshots", "--repo", repoDir); !strings.Contains(table, "4 snapshots") || !strings.Contains(table, "pod=db-0") {
		t.Errorf("snapshots table:\n%s", table)
	}

	target := filepath.Join(base, "restored")
	mustStraddle(t, "repo", "restore", first["snapshot_id"].(string)[:10], "--repo", repoDir, "--target", target)
	repotest.CompareTrees(t, src, target)
	partial := filepath.Join(base, "partial")
	mustStraddle(t, "repo", "restore", "latest", "--repo", repoDir, "--target", partial, "--include", "a/b")
	if entries, _ := os.ReadDir(partial); len(entries) != 1 {
		t.Errorf("--include a/b restored %d top-level entries, want 1", len(entries))
	}

	var chk map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "check", "--repo", repoDir, "--read-data", "--json")), &chk)
	if chk["ok"] != true || chk["packs_read"].(float64) == 0 {
		t.Errorf("check --read-data --json: %v", chk)
	}
	mustStraddle(t, "repo", "check", "--repo", repoDir, "--read-data-subset", "10%")
	var stats map[string]any
	_ = json.Unmarshal([]byte(mustStraddle(t, "repo", "stats", "--repo", repoDir, "--json")), &stats)
	if stats["snapshots"].(float64) != 4 || stats["dedup_ratio"].(float64) < 2.5 {
		t.Errorf("stats: %v", stats)
	}
}

func TestRepoErrorsAreOneClearSentence(t *testing.T) {
	base := t.TempDir()
	repoDir := filepath.Join(base, "repo")
	t.Setenv("STRADDLE_PASSWORD", "right")
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	pwFile := filepath.Join(base, "pw")
	_ = os.WriteFile(pwFile, []byte("wrong\n"), 0o600)
	emptyFile := filepath.Join(base, "empty")
	_ = os.WriteFile(emptyFile, nil, 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"repo", "snapshots", "--repo", repoDir, "--password-file", pwFile}, "wrong password"},
		{[]string{"repo", "snapshots", "--repo", repoDir, "--password-file", emptyFile}, "is empty"},
		{[]string{"repo", "snapshots", "--repo", filepath.Join(base, "none")}, "there is no repository"},
		{[]string{"repo", "snapshots", "--repo", base}, "there is no repository"},
		{[]string{"repo", "snapshots"}, "no repository given"},
		{[]string{"repo", "init", "--repo", repoDir}, "already exists"},
		{[]string{"repo", "init", "--repo", base}, "not empty"},
		{[]string{"repo", "backup", filepath.Join(base, "missing"), "--repo", repoDir}, "cannot back up"},
		{[]string{"repo", "backup", pwFile, "--repo", repoDir}, "not a directory"},
		{[]string{"repo", "backup", base, "--repo", repoDir, "--tag", "novalue"}, "key=value"},
		{[]string{"repo", "restore", "latest", "--repo", repoDir, "--target", filepath.Join(base, "t")}, "no snapshot"},
		{[]string{"repo", "restore", "latest", "--repo", repoDir, "--target", base, "--include", "../x"}, "must not contain"},
		{[]string{"repo", "check", "--repo", repoDir, "--read-data-subset", "200%"}, "percentage"},
		{[]string{"repo", "init", "--repo", "s3+http://127.0.0.1:1/bkt"}, "127.0.0.1:1"},
		{[]string{"repo", "init", "--repo", filepath.Join(base, "r2"), "--compression", "turbo"}, "unknown compression"},
	} {
		_, err := straddle(t, tc.args...)
		if err == nil {
			t.Errorf("straddle %v succeeded", tc.args)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "goroutine") {
			t.Errorf("straddle %v: error %q, want one line containing %q", tc.args, msg, tc.want)
		}
	}
	t.Setenv("STRADDLE_PASSWORD", "")
	if _, err := straddle(t, "repo", "snapshots", "--repo", repoDir); err == nil || !strings.Contains(err.Error(), "STRADDLE_PASSWORD") {
		t.Errorf("no password: %v", err)
	}
}

func TestRepoCheckAndRestoreReportDamage(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "pw")
	base := t.TempDir()
	repoDir, src := filepath.Join(base, "repo"), filepath.Join(base, "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 12, Files: 10, Big: 1 << 20})
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	mustStraddle(t, "repo", "backup", src, "--repo", repoDir)
	packs, _ := filepath.Glob(filepath.Join(repoDir, "data", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no packs")
	}
	for _, p := range packs {
		b, _ := os.ReadFile(p)
		b[len(b)/4] ^= 0x80
		_ = os.WriteFile(p, b, 0o600)
	}
	out, err := straddle(t, "repo", "check", "--repo", repoDir, "--read-data")
	if err == nil || !strings.Contains(out, "error: data/") {
		t.Fatalf("check of a damaged repository: err %v, output:\n%s", err, out)
	}
	_, err = straddle(t, "repo", "restore", "latest", "--repo", repoDir, "--target", filepath.Join(base, "t"))
	if err == nil || !strings.Contains(err.Error(), "target is incomplete") {
		t.Fatalf("restore of a damaged repository: %v", err)
	}
}

// A snapshot list that cannot be read must stop the backup: falling back to a full backup would read every
// file again and hide that the repository is damaged.
func TestBackupStopsWhenTheParentCannotBeFound(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "cli-test")
	base := t.TempDir()
	repoDir, src := filepath.Join(base, "repo"), filepath.Join(base, "src")
	repotest.MakeTree(t, src, repotest.TreeOptions{Seed: 3, Files: 3})
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	mustStraddle(t, "repo", "backup", src, "--repo", repoDir, "--host", "h")
	snaps, _ := filepath.Glob(filepath.Join(repoDir, "snapshots", "*"))
	if len(snaps) != 1 {
		t.Fatalf("snapshots %v", snaps)
	}
	if err := os.WriteFile(snaps[0], []byte("not a sealed snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Without the snapshot cache: a client that cached the snapshot when it saved it reads its intact copy
	// (snapshots are named by their content), which is the cache's point; a client without it must stop.
	_, err := straddle(t, "repo", "backup", src, "--repo", repoDir, "--host", "h", "--cache-dir=")
	if err == nil || !strings.Contains(err.Error(), "find the parent snapshot") {
		t.Fatalf("backup beside a damaged snapshot: %v, want it to stop naming the parent lookup", err)
	}
}
