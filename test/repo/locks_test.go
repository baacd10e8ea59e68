//go:build integration

package repo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

// TestStaleAndLiveLocks proves the lock rules with real processes: the lock of a SIGKILLed backup blocks
// neither a backup nor a prune, which deletes the packs the dead backup stored but never indexed; a live (SIGSTOPped) backup makes prune wait --max-wait and refuse, naming
// it; unlock removes the dead process's lock and keeps the live one's; the stopped backup, resumed, ends
// well and the repository checks clean.
func TestStaleAndLiveLocks(t *testing.T) {
	srv := miniotest.Start(t)
	srv.SetEnv(t)
	t.Setenv("STRADDLE_PASSWORD", "lock-proof")
	bucket := srv.NewBucket(t)
	url := srv.URL(bucket, "locks")
	locks := newObjects(t, srv, bucket, "locks")
	src := filepath.Join(t.TempDir(), "src")
	makeBigTree(t, src, 11, 48<<20, 100<<10, 3<<20)
	small := filepath.Join(t.TempDir(), "small")
	makeBigTree(t, small, 12, 1<<20, 10<<10, 100<<10)
	mustRun(t, time.Minute, "repo", "init", "--repo", url)
	backup := func(host, dir string) []string {
		return []string{"repo", "backup", dir, "--repo", url, "--host", host, "--json", "--lock-wait", "0s"}
	}

	// A backup killed while holding its lock leaves the lock behind, and a pack it stored but did not index
	// (its first checkpoint is 5 minutes away)...
	dead := start(t, backup("dead", src)...)
	locks.waitForLocks(t, 1, dead, 30*time.Second)
	if !locks.waitFor(t, "data/", 1, dead, time.Minute) {
		t.Fatalf("the backup to kill ended (%v) before it stored a pack; raise the tree size", dead.err)
	}
	dead.kill(t)
	if n := locks.count(t, "locks/"); n != 1 {
		t.Fatalf("after the kill %d locks are stored; want the dead backup's one", n)
	}
	// ...which blocks neither a backup (that may not wait at all)...
	mustRun(t, time.Minute, backup("other", small)...)
	// ...nor a prune's exclusive phase, which gets a short --max-wait.
	res := mustRun(t, time.Minute, "repo", "prune", "--repo", url, "--json", "--max-wait", "2s")
	pr := decode[pruneJSON](t, res)
	t.Logf("prune beside the dead lock: %+v in %v", pr, res.elapsed)
	if pr.UnindexedPacks == 0 || pr.PacksDeleted < pr.UnindexedPacks {
		t.Errorf("prune did not delete the killed backup's unindexed packs: %+v", pr)
	}

	// A live backup, stopped while it holds its lock: the pid runs, so its lock is live.
	live := start(t, backup("live", src)...)
	locks.waitForLocks(t, 2, live, 30*time.Second)
	if err := live.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP pid %d: %v", live.pid(), err)
	}
	t.Cleanup(func() { _ = live.cmd.Process.Signal(syscall.SIGCONT) })

	res = run(t, time.Minute, "repo", "prune", "--repo", url, "--max-wait", "2s")
	if res.err == nil {
		t.Fatalf("prune beside a live backup succeeded:\n%s", res.stdout)
	}
	holder := fmt.Sprintf("backup on host %s pid %d", hostname(t), live.pid())
	if !strings.Contains(res.stderr, holder) || !strings.Contains(res.stderr, "prune deleted nothing") {
		t.Errorf("prune's refusal does not say it deleted nothing because of %q:\n%s", holder, res.stderr)
	}
	if res.elapsed < 2*time.Second {
		t.Errorf("prune refused after %v, before its --max-wait of 2s", res.elapsed)
	}
	t.Logf("prune refused after %v: %s", res.elapsed, strings.TrimSpace(res.stderr))

	// unlock removes the dead backup's lock and keeps the stopped one's.
	res = mustRun(t, time.Minute, "repo", "unlock", "--repo", url)
	t.Logf("unlock:\n%s", res.stdout)
	deadLine := lineWith(res.stdout, fmt.Sprintf("pid %d ", dead.pid()))
	liveLine := lineWith(res.stdout, fmt.Sprintf("pid %d ", live.pid()))
	if !strings.HasPrefix(deadLine, "removed ") || !strings.Contains(deadLine, "stale") {
		t.Errorf("unlock did not remove the killed backup's lock as stale: %q", deadLine)
	}
	if !strings.HasPrefix(liveLine, "kept ") || !strings.Contains(liveLine, "live") {
		t.Errorf("unlock did not keep the stopped backup's live lock: %q", liveLine)
	}
	if n := locks.count(t, "locks/"); n != 1 {
		t.Errorf("after unlock %d locks are stored; want only the stopped backup's", n)
	}

	// Resumed, the stopped backup ends well: nothing it needed was deleted meanwhile.
	if err := live.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT pid %d: %v", live.pid(), err)
	}
	if err := live.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("the resumed backup failed: %v\n%s", err, live.stderr.String())
	}
	if n := locks.count(t, "locks/"); n != 0 {
		t.Errorf("after every process ended %d locks are stored", n)
	}
	checkClean(t, url)
}

func hostname(t testing.TB) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// lineWith returns the first line of out containing s, or "".
func lineWith(out, s string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
