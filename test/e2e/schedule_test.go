//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// scheduleWatch polls a schedule's Backups and records every name seen and each time two of them were
// running at once (the schedule must never overlap its runs).
type scheduleWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	seen     map[string]time.Time // Backup name → when first seen
	overlaps []string
}

func (c *cluster) watchSchedule(t testing.TB, schedule string) *scheduleWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &scheduleWatch{cancel: cancel, done: make(chan struct{}), seen: map[string]time.Time{}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			var list v1.BackupList
			if err := c.cl.List(ctx, &list, client.InNamespace(installNamespace), client.MatchingLabels{v1.ScheduleLabel: schedule}); err == nil {
				w.record(list.Items)
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.stop)
	return w
}

func (w *scheduleWatch) record(backups []v1.Backup) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var running []string
	for _, b := range backups {
		if _, ok := w.seen[b.Name]; !ok {
			w.seen[b.Name] = time.Now()
		}
		if !terminalBackup(b.Status.Phase) && b.Status.Phase != v1.PhaseDeleting && b.DeletionTimestamp.IsZero() {
			running = append(running, fmt.Sprintf("%s (%q)", b.Name, b.Status.Phase))
		}
	}
	if len(running) > 1 {
		w.overlaps = append(w.overlaps, strings.Join(running, ", "))
	}
}

func (w *scheduleWatch) stop() {
	w.cancel()
	<-w.done
}

// names lists the Backups seen so far, oldest first (their names end with the tick time).
func (w *scheduleWatch) names() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	names := sortedKeys(w.seen)
	return names
}

// scheduleBackups lists the schedule's Backups now.
func (c *cluster) scheduleBackups(t testing.TB, schedule string) []v1.Backup {
	t.Helper()
	var list v1.BackupList
	if err := c.cl.List(context.Background(), &list, client.InNamespace(installNamespace), client.MatchingLabels{v1.ScheduleLabel: schedule}); err != nil {
		t.Fatalf("list backups of schedule %s: %v", schedule, err)
	}
	return list.Items
}

// repoSnapshots lists the snapshot IDs of namespace's repository with `straddle repo snapshots --json`, with
// the backup each is tagged with.
func (c *cluster) repoSnapshots(t testing.TB, namespace string) map[string]string {
	t.Helper()
	res := c.repo(t, time.Minute, namespace, "snapshots", "--json")
	if res.err != nil {
		t.Fatalf("list snapshots: %s", res)
	}
	var snaps []struct {
		ID   string            `json:"id"`
		Tags map[string]string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &snaps); err != nil {
		t.Fatalf("read snapshots --json: %v\n%s", err, res.stdout)
	}
	out := map[string]string{}
	for _, s := range snaps {
		out[s.ID] = s.Tags["backup"]
	}
	return out
}

// snapshotsOf lists the snapshot IDs the Backups' PodVolumeBackups recorded.
func (c *cluster) snapshotsOf(t testing.TB, backups []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, b := range backups {
		for _, pvb := range c.volumeBackups(t, b) {
			if pvb.Status.SnapshotID != "" {
				out[pvb.Status.SnapshotID] = b
			}
		}
	}
	return out
}

// TestScheduleAndRetention runs a Schedule "@every 5s" with keepLast 3 for 40 s (issue 7): its Backups never
// overlap, at most 3 remain, the repository holds exactly their snapshots, and pausing stops new runs. Beside
// it, a Backup with a 10 s TTL goes within a minute, with its stored objects and snapshots.
func TestScheduleAndRetention(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: fixtures{
		"sched/app/data": func(dir string) error {
			return writeFile("state", strings.Repeat("scheduled backups keep only their newest three\n", 200))(dir)
		},
		"ttl/app/data": func(dir string) error { return writeSmallFiles(filepath.Join(dir, "files"), 50, 31) },
	}.fill})
	for _, ns := range []string{"sched", "ttl"} {
		mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		mustCreate(t, c.cl, testPod(ns, "app", nodeA, map[string]string{annBackupVolumes: "data"}, emptyDirVolume("data")))
		c.waitPodsRunning(t, ns, 1)
	}

	// The scheduled volume changes all the time, so each run stores data of its own and the runs retention
	// deletes leave data for maintenance to free.
	churnCtx, stopChurn := context.WithCancel(context.Background())
	churnDone := make(chan error, 1)
	go func(dir string) { churnDone <- churn(churnCtx, dir) }(c.volumeDir(t, "sched", "app", "data"))
	t.Cleanup(stopChurn)

	// The TTL backup runs beside the schedule.
	if res := c.cli(time.Minute, "backup", "create", "short", "--include-namespaces", "ttl", "--ttl", "10s"); res.err != nil {
		t.Fatalf("create the TTL backup: %s", res)
	}
	ttlCreated := time.Now()

	w := c.watchSchedule(t, "every5")
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var list v1.ScheduleList
		if err := c.cl.List(context.Background(), &list, client.InNamespace(installNamespace)); err != nil {
			t.Logf("list Schedules: %v", err)
		}
		for _, s := range list.Items {
			t.Logf("Schedule %s: spec %+v, status %+v", s.Name, s.Spec, s.Status)
		}
	})
	res := c.cli(time.Minute, "schedule", "create", "every5", "--schedule", "@every 5s", "--include-namespaces", "sched", "--keep-last", "3")
	if res.err != nil {
		t.Fatalf("create the schedule: %s", res)
	}
	t.Logf("%s", strings.TrimSpace(res.stdout))

	short := c.waitBackup(t, "short", backupTimeout)
	if short.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("the TTL backup is %s, want Completed: %v", short.Status.Phase, short.Status.Errors)
	}
	shortSnaps := c.snapshotsOf(t, []string{"short"})
	if len(shortSnaps) != 1 || len(c.bucketObjects(t, "backups/short/")) == 0 {
		t.Fatalf("the TTL backup has snapshots %v and objects %v; want one snapshot and its folder", shortSnaps, c.bucketObjects(t, "backups/short/"))
	}

	c.waitFor(t, "the schedule to run for 40 s", 45*time.Second, func() (bool, error) {
		return time.Since(ttlCreated) >= 40*time.Second, nil
	})
	if res := c.cli(time.Minute, "schedule", "pause", "every5"); res.err != nil {
		t.Fatalf("pause: %s", res)
	}
	stopChurn()
	if err := <-churnDone; err != nil {
		t.Fatalf("change the scheduled volume: %v", err)
	}

	// The TTL backup is gone within a minute of its creation, with its folder and its snapshot.
	c.waitFor(t, "the TTL backup to go", time.Until(ttlCreated.Add(time.Minute)), func() (bool, error) {
		err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: "short"}, &v1.Backup{})
		return apierrors.IsNotFound(err), err
	})
	if objs := c.bucketObjects(t, "backups/short/"); len(objs) != 0 {
		t.Errorf("the expired backup left objects: %v", objs)
	}
	if snaps := c.repoSnapshots(t, "ttl"); len(snaps) != 0 {
		t.Errorf("the expired backup left snapshots: %v", snaps)
	}

	// Once the last run ended and retention deleted what it does not keep, at most 3 remain.
	var remaining []string
	c.waitFor(t, "the schedule's backups to end and at most 3 to remain", 2*time.Minute, func() (bool, error) {
		remaining = remaining[:0]
		for _, b := range c.scheduleBackups(t, "every5") {
			if !terminalBackup(b.Status.Phase) || !b.DeletionTimestamp.IsZero() {
				return false, fmt.Errorf("backup %s is %q", b.Name, b.Status.Phase)
			}
			remaining = append(remaining, b.Name)
		}
		return len(remaining) <= 3, fmt.Errorf("%d remain: %v", len(remaining), remaining)
	})
	slices.Sort(remaining)
	seen := w.names()
	t.Logf("the schedule made %d backups in 40 s: %v; %d remain: %v", len(seen), seen, len(remaining), remaining)
	if len(seen) < 4 {
		t.Errorf("the schedule made %d backups in 40 s at @every 5s; want at least 4, so retention had something to delete", len(seen))
	}
	if len(remaining) != 3 {
		t.Errorf("%d backups remain, want 3 (keepLast 3)", len(remaining))
	}
	if want := seen[len(seen)-min(3, len(seen)):]; !slices.Equal(remaining, want) {
		t.Errorf("backups %v remain, want the newest three %v", remaining, want)
	}
	w.mu.Lock()
	overlaps := slices.Clone(w.overlaps)
	w.mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("the schedule's backups overlapped %d times, first: %s", len(overlaps), overlaps[0])
	}

	// The repository holds exactly the remaining backups' snapshots.
	want := c.snapshotsOf(t, remaining)
	got := c.repoSnapshots(t, "sched")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("repository snapshots %v, want those of the remaining backups %v", got, want)
	}

	// Maintenance then frees the data only the deleted runs used, and leaves the kept ones whole.
	c.setMaintenance(t, "sched", func(s *v1.BackupRepositorySpec) {
		s.MaintenanceFrequency = &metav1.Duration{Duration: 5 * time.Second}
	})
	var pruned *v1.PruneResult
	c.waitFor(t, "a prune that freed bytes", 2*time.Minute, func() (bool, error) {
		p := c.backupRepository(t, "sched").Status.LastPrune
		if p != nil && p.Error != "" && !p.Postponed {
			t.Fatalf("prune failed: %s", p.Error)
		}
		if p != nil && p.BytesFreed > 0 {
			pruned = p
		}
		return pruned != nil, fmt.Errorf("lastPrune %+v", p)
	})
	t.Logf("prune on %s freed %d bytes, %d snapshots kept", pruned.Node, pruned.BytesFreed, pruned.Snapshots)
	if int(pruned.Snapshots) != len(want) {
		t.Errorf("the prune saw %d snapshots, want the %d of the remaining backups", pruned.Snapshots, len(want))
	}
	if got := c.repoSnapshots(t, "sched"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after maintenance the repository holds %v, want %v", got, want)
	}
	if res := c.repo(t, 5*time.Minute, "sched", "check", "--read-data"); res.err != nil {
		t.Errorf("check --read-data after maintenance: %s", res)
	}
	for id := range want {
		c.restoreSnapshot(t, "sched", id, filepath.Join(t.TempDir(), "restore"))
	}

	// Paused: no new runs.
	before := w.names()
	time.Sleep(12 * time.Second)
	if after := w.names(); !slices.Equal(after, before) {
		t.Errorf("paused, the schedule still made backups: %v", after[len(before):])
	}
	var s v1.Schedule
	if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: "every5"}, &s); err != nil {
		t.Fatal(err)
	}
	if s.Status.NextRunTime != nil || s.Status.LastBackup == "" {
		t.Errorf("paused schedule's status: %+v", s.Status)
	}
	if res := c.cli(time.Minute, "schedule", "get"); res.err != nil || !strings.Contains(res.stdout, "paused") || !strings.Contains(res.stdout, s.Status.LastBackup) {
		t.Errorf("schedule get: %s", res)
	}
	if res := c.cli(time.Minute, "schedule", "describe", "every5"); res.err != nil || !strings.Contains(res.stdout, "keep-last 3") || !strings.Contains(res.stdout, remaining[len(remaining)-1]) {
		t.Errorf("schedule describe: %s", res)
	}
}

// churn replaces the file "churn" in dir with 256 KiB of new random bytes every second until ctx ends; each
// version is written beside the volume (the same file system) and renamed in, so a backup reads one whole
// version and never a half-written temporary file.
func churn(ctx context.Context, dir string) error {
	buf := make([]byte, 256<<10)
	for i := 0; ; i++ {
		if _, err := rand.Read(buf); err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(dir), fmt.Sprintf(".churn-%d", i))
		if err := os.WriteFile(tmp, buf, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, "churn")); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
