package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage/fs"
)

// seedSnapshots stores snapshots at chosen times in the directory repository, as backups would have, and
// returns their IDs in order. Forget reads no trees, so the tree IDs need not exist.
func seedSnapshots(t *testing.T, repoDir, password string, snaps ...*snapshot.Snapshot) []string {
	t.Helper()
	ctx := context.Background()
	be, err := fs.Open(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, []byte(password), repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range snaps {
		s.Tree = id.Random()
		if _, err := r.SaveSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID.String())
	}
	return ids
}

func snapAt(when, host string, tags map[string]string) *snapshot.Snapshot {
	t, err := time.Parse(time.RFC3339, when)
	if err != nil {
		panic(err)
	}
	return &snapshot.Snapshot{Time: t, Host: host, Paths: []string{"/data"}, Tags: tags}
}

func snapshotIDs(t *testing.T, repoDir string) map[string]bool {
	t.Helper()
	var snaps []map[string]any
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "snapshots", "--repo", repoDir, "--json")), &snaps); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, s := range snaps {
		ids[s["id"].(string)] = true
	}
	return ids
}

// forgetDoc mirrors the --json contract, so a renamed field fails the test.
type forgetDoc struct {
	DryRun *bool `json:"dry_run"`
	Groups []struct {
		Group  map[string]any `json:"group"`
		Keep   []forgetEntry  `json:"keep"`
		Remove []forgetEntry  `json:"remove"`
	} `json:"groups"`
}

type forgetEntry struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"`
	Host    string            `json:"host"`
	Paths   []string          `json:"paths"`
	Tags    map[string]string `json:"tags"`
	Reasons []string          `json:"reasons"`
}

func TestRepoForgetByPolicy(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "pw")
	repoDir := filepath.Join(t.TempDir(), "repo")
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	ids := seedSnapshots(t, repoDir, "pw",
		snapAt("2026-03-01T10:00:00Z", "node-a", map[string]string{"pod": "db-0"}), // 0: removed by keep-daily 2
		snapAt("2026-03-01T20:00:00Z", "node-a", map[string]string{"pod": "db-0"}), // 1: daily
		snapAt("2026-03-02T08:00:00Z", "node-a", map[string]string{"pod": "db-0"}), // 2: removed
		snapAt("2026-03-02T09:00:00Z", "node-a", map[string]string{"pod": "db-0"}), // 3: last, daily
		snapAt("2026-03-01T10:00:00Z", "node-b", nil),                              // 4: daily
		snapAt("2026-03-02T10:00:00Z", "node-b", nil),                              // 5: last, daily
	)
	all := snapshotIDs(t, repoDir)

	// A dry run plans per host and deletes nothing.
	var doc forgetDoc
	out := mustStraddle(t, "repo", "forget", "--repo", repoDir, "--keep-last", "1", "--keep-daily", "2", "--dry-run", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("forget --json: %v\n%s", err, out)
	}
	if doc.DryRun == nil || !*doc.DryRun || len(doc.Groups) != 2 {
		t.Fatalf("forget --json: %s", out)
	}
	a, b := doc.Groups[0], doc.Groups[1]
	if a.Group["host"] != "node-a" || b.Group["host"] != "node-b" || a.Group["tags"] != nil {
		t.Errorf("group keys: %v, %v", a.Group, b.Group)
	}
	if paths, _ := a.Group["paths"].([]any); len(paths) != 1 || paths[0] != "/data" {
		t.Errorf("group paths: %v", a.Group)
	}
	if len(a.Keep) != 2 || a.Keep[0].ID != ids[1] || strings.Join(a.Keep[0].Reasons, ",") != "daily" ||
		a.Keep[1].ID != ids[3] || strings.Join(a.Keep[1].Reasons, ",") != "last,daily" {
		t.Errorf("node-a keeps %+v", a.Keep)
	}
	if len(a.Remove) != 2 || a.Remove[0].ID != ids[0] || a.Remove[1].ID != ids[2] || a.Remove[0].Reasons != nil ||
		a.Remove[0].Tags["pod"] != "db-0" || !a.Remove[0].Time.Equal(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("node-a removes %+v", a.Remove)
	}
	if len(b.Keep) != 2 || len(b.Remove) != 0 || b.Keep[0].Tags == nil {
		t.Errorf("node-b: keep %+v, remove %+v", b.Keep, b.Remove)
	}
	if got := snapshotIDs(t, repoDir); len(got) != len(all) {
		t.Fatalf("a dry run deleted %d snapshots", len(all)-len(got))
	}

	table := mustStraddle(t, "repo", "forget", "--repo", repoDir, "--keep-last", "1", "--keep-daily", "2", "--dry-run")
	for _, want := range []string{"policy: keep-last 1, keep-daily 2; grouped by host,paths\n", "host node-a, paths /data: keep 2, remove 2", "host node-b, paths /data: keep 2, remove 0",
		"remove  " + ids[0][:8], "keep    " + ids[3][:8], "last,daily", "pod=db-0", "2026-03-01 10:00:00", "would remove 2 snapshots and keep 4"} {
		if !strings.Contains(table, want) {
			t.Errorf("dry-run table lacks %q:\n%s", want, table)
		}
	}
	if got := snapshotIDs(t, repoDir); len(got) != len(all) {
		t.Fatal("a dry run deleted snapshots")
	}

	// Filters: only node-b's snapshots are considered, so node-a's stay whatever the policy says.
	out = mustStraddle(t, "repo", "forget", "--repo", repoDir, "--keep-last", "1", "--host", "node-b")
	if !strings.Contains(out, "removed 1 snapshots, kept 1") {
		t.Errorf("forget --host node-b:\n%s", out)
	}
	got := snapshotIDs(t, repoDir)
	if len(got) != 5 || got[ids[4]] || !got[ids[5]] {
		t.Fatalf("after forget --host node-b: %v", got)
	}
	// A tag filter matching nothing removes nothing.
	out = mustStraddle(t, "repo", "forget", "--repo", repoDir, "--keep-last", "1", "--tag", "pod=db-9")
	if !strings.Contains(out, "no snapshots match") || len(snapshotIDs(t, repoDir)) != 5 {
		t.Errorf("forget with a tag nothing has:\n%s", out)
	}
	// One group for everything: the newest snapshot of all hosts survives.
	out = mustStraddle(t, "repo", "forget", "--repo", repoDir, "--keep-last", "1", "--group-by", "")
	if !strings.Contains(out, "policy: keep-last 1; one group") || !strings.Contains(out, "all snapshots: keep 1, remove 4") {
		t.Errorf("forget --group-by '':\n%s", out)
	}
	if got := snapshotIDs(t, repoDir); len(got) != 1 || !got[ids[5]] {
		t.Fatalf("after forget --group-by '': %v", got)
	}
}

func TestRepoForgetByID(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "pw")
	repoDir := filepath.Join(t.TempDir(), "repo")
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	ids := seedSnapshots(t, repoDir, "pw",
		snapAt("2026-03-01T10:00:00Z", "node-a", nil),
		snapAt("2026-03-01T11:00:00Z", "node-a", nil),
		snapAt("2026-03-01T12:00:00Z", "node-a", nil),
		snapAt("2026-03-01T13:00:00Z", "node-a", nil),
	)

	out := mustStraddle(t, "repo", "forget", "--repo", repoDir, ids[0][:6], "--dry-run")
	if !strings.Contains(out, "remove  "+ids[0][:8]) || !strings.Contains(out, "would remove 1 snapshots") || len(snapshotIDs(t, repoDir)) != 4 {
		t.Fatalf("forget ID --dry-run:\n%s", out)
	}
	out = mustStraddle(t, "repo", "forget", "--repo", repoDir, ids[0], ids[1][:8])
	if !strings.Contains(out, "removed 2 snapshots") {
		t.Errorf("forget by ID and prefix:\n%s", out)
	}
	if got := snapshotIDs(t, repoDir); len(got) != 2 || got[ids[0]] || got[ids[1]] {
		t.Fatalf("after forget by ID: %v", got)
	}
	if _, err := os.Stat(filepath.Join(repoDir, "snapshots", ids[0])); !os.IsNotExist(err) {
		t.Fatalf("the snapshot object is still there: %v", err)
	}

	var doc forgetDoc
	if err := json.Unmarshal([]byte(mustStraddle(t, "repo", "forget", "--repo", repoDir, ids[2][:10], "--json")), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Groups) != 1 || len(doc.Groups[0].Group) != 0 || len(doc.Groups[0].Keep) != 0 || len(doc.Groups[0].Remove) != 1 ||
		doc.Groups[0].Remove[0].ID != ids[2] || *doc.DryRun {
		t.Fatalf("forget ID --json: %+v", doc)
	}

	// Two snapshot objects named with a shared prefix make "abcd" ambiguous; with an unknown or ambiguous ID
	// nothing at all is deleted, not even the snapshots named correctly.
	buf, err := os.ReadFile(filepath.Join(repoDir, "snapshots", ids[3]))
	if err != nil {
		t.Fatal(err)
	}
	var twins []string
	for _, suffix := range []string{"1", "2"} {
		twin := filepath.Join(repoDir, "snapshots", "abcd"+strings.Repeat("0", 59)+suffix)
		if err := os.WriteFile(twin, buf, 0o600); err != nil {
			t.Fatal(err)
		}
		twins = append(twins, twin)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{ids[3][:8], "abcd"}, "matches 2 snapshots"},
		{[]string{ids[3][:8], "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}, "not found"},
		{[]string{ids[3][:8], "zz"}, "nor a snapshot ID"},
	} {
		_, err := straddle(t, append([]string{"repo", "forget", "--repo", repoDir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("forget %v: %v, want an error containing %q", tc.args, err, tc.want)
		}
		if _, err := os.Stat(filepath.Join(repoDir, "snapshots", ids[3])); err != nil {
			t.Fatalf("forget %v deleted a snapshot it named correctly: %v", tc.args, err)
		}
	}
	for _, twin := range twins {
		_ = os.Remove(twin)
	}
	if got := snapshotIDs(t, repoDir); len(got) != 1 || !got[ids[3]] {
		t.Fatalf("left at the end: %v", got)
	}
}

func TestRepoForgetRefusesUnclearRequests(t *testing.T) {
	t.Setenv("STRADDLE_PASSWORD", "pw")
	repoDir := filepath.Join(t.TempDir(), "repo")
	mustStraddle(t, "repo", "init", "--repo", repoDir)
	ids := seedSnapshots(t, repoDir, "pw", snapAt("2026-03-01T10:00:00Z", "node-a", nil), snapAt("2026-03-01T11:00:00Z", "node-a", nil))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "needs snapshot IDs or at least one --keep"},
		{[]string{"--host", "node-a"}, "needs snapshot IDs or at least one --keep"},
		{[]string{"--dry-run"}, "needs snapshot IDs or at least one --keep"},
		{[]string{ids[0], "--keep-last", "1"}, "not both"},
		{[]string{"--keep-last", "-1"}, "cannot be negative"},
		{[]string{"--keep-last", "1", "--group-by", "host,pod"}, "cannot group by \"pod\""},
		{[]string{"--keep-last", "1", "--tag", "pod"}, "key=value"},
		{[]string{ids[1][:8], "--host", "node-b"}, "does not match"},
	} {
		_, err := straddle(t, append([]string{"repo", "forget", "--repo", repoDir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("forget %v: %v, want one line containing %q", tc.args, err, tc.want)
		}
	}
	if got := snapshotIDs(t, repoDir); len(got) != 2 {
		t.Fatalf("a refused forget deleted snapshots: %v", got)
	}
}
