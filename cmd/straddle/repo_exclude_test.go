package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoBackupExcludesAreRecordedAndShown(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "cli-test")
	base := t.TempDir()
	repoDir, src := filepath.Join(base, "repo"), filepath.Join(base, "src")
	for rel, content := range map[string]string{"keep": "k", "x.tmp": "t", "cache/a": "c", "sub/cache/b": "kept"} {
		p := filepath.Join(src, rel)
		_ = os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustStraddle(t, "repo", "init", "--repo", repoDir)

	if _, err := straddle(t, "repo", "backup", src, "--repo", repoDir, "--exclude", "[oops"); err == nil || !strings.Contains(err.Error(), `"[oops"`) {
		t.Fatalf("bad pattern: %v", err)
	}
	plain := mustStraddle(t, "repo", "backup", src, "--repo", repoDir)
	if strings.Contains(plain, "excluded") {
		t.Errorf("a backup without excludes says:\n%s", plain)
	}
	if table := mustStraddle(t, "repo", "snapshots", "--repo", repoDir); strings.Contains(table, "EXCLUDES") {
		t.Errorf("snapshots table has an EXCLUDES column though no snapshot excluded anything:\n%s", table)
	}
	out := mustStraddle(t, "repo", "backup", src, "--repo", repoDir, "--exclude", "*.tmp", "--exclude", "/cache/**")
	if !strings.Contains(out, "excluded: *.tmp, /cache/**") {
		t.Errorf("backup output does not list the excludes:\n%s", out)
	}

	var snaps []map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "snapshots", "--repo", repoDir, "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	if _, ok := snaps[0]["excludes"]; ok {
		t.Errorf("snapshot without excludes has an excludes field: %v", snaps[0])
	}
	if ex, _ := snaps[1]["excludes"].([]any); len(ex) != 2 || ex[0] != "*.tmp" || ex[1] != "/cache/**" {
		t.Errorf("snapshots --json excludes %v", snaps[1]["excludes"])
	}
	if table := mustStraddle(t, "repo", "snapshots", "--repo", repoDir); !strings.Contains(table, "EXCLUDES") || !strings.Contains(table, "*.tmp,/cache/**") {
		t.Errorf("snapshots table:\n%s", table)
	}

	target := filepath.Join(base, "restored")
	out = mustStraddle(t, "repo", "restore", "latest", "--repo", repoDir, "--target", target)
	if !strings.Contains(out, "was taken with excludes: *.tmp, /cache/**") {
		t.Errorf("restore output:\n%s", out)
	}
	for rel, want := range map[string]bool{"keep": true, "sub/cache/b": true, "x.tmp": false, "cache": false} {
		if _, err := os.Lstat(filepath.Join(target, rel)); (err == nil) != want {
			t.Errorf("%s restored: %v, want %v", rel, err == nil, want)
		}
	}
	first := filepath.Join(base, "first")
	if out := mustStraddle(t, "repo", "restore", snaps[0]["id"].(string), "--repo", repoDir, "--target", first); strings.Contains(out, "excludes") {
		t.Errorf("restore of a snapshot without excludes says:\n%s", out)
	}
}
