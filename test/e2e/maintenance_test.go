//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/deploy"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/storage/s3"
)

// repositoryName is the BackupRepository the controller creates for namespace's volumes in the default
// location (controller.recordRepository: <location>-<namespace>).
func repositoryName(namespace string) string { return deploy.DefaultLocationName + "-" + namespace }

func (c *cluster) backupRepository(t testing.TB, namespace string) *v1.BackupRepository {
	t.Helper()
	var br v1.BackupRepository
	if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: repositoryName(namespace)}, &br); err != nil {
		t.Fatalf("read BackupRepository %s: %v", repositoryName(namespace), err)
	}
	return &br
}

// setMaintenance changes a repository's maintenance spec as a user would (kubectl edit).
func (c *cluster) setMaintenance(t testing.TB, namespace string, change func(*v1.BackupRepositorySpec)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		br := c.backupRepository(t, namespace)
		change(&br.Spec)
		return c.cl.Update(context.Background(), br)
	})
	if err != nil {
		t.Fatalf("change the maintenance of BackupRepository %s: %v", repositoryName(namespace), err)
	}
}

// logRepositoryOnFailure prints a repository's status and events when the test fails (the cluster's dump does
// not know BackupRepositories).
func (c *cluster) logRepositoryOnFailure(t *testing.T, namespace string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		var br v1.BackupRepository
		if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: repositoryName(namespace)}, &br); err == nil {
			st, _ := json.MarshalIndent(br.Status, "", "  ")
			t.Logf("BackupRepository %s status:\n%s", br.Name, st)
		}
		for _, ev := range c.repositoryEvents(t, namespace) {
			t.Logf("event %s %s: %s", ev.CreationTimestamp.UTC().Format(time.RFC3339), ev.Reason, ev.Note)
		}
	})
}

func (c *cluster) repositoryEvents(t testing.TB, namespace string) []eventsv1.Event {
	t.Helper()
	evs, err := c.cs.EventsV1().Events(installNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Errorf("list events: %v", err)
		return nil
	}
	var out []eventsv1.Event
	for _, ev := range evs.Items {
		if ev.Regarding.Kind == "BackupRepository" && ev.Regarding.Name == repositoryName(namespace) {
			out = append(out, ev)
		}
	}
	return out
}

// deleteBackup deletes a Backup; waitGone waits until its finalizer (which forgets its snapshots) let it go.
func (c *cluster) deleteBackup(t testing.TB, name string) {
	t.Helper()
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: installNamespace, Name: name}}
	if err := c.cl.Delete(context.Background(), b); err != nil {
		t.Fatalf("delete Backup %s: %v", name, err)
	}
}

func (c *cluster) waitBackupGone(t testing.TB, name string) {
	t.Helper()
	c.waitFor(t, "Backup "+name+" to be deleted", 2*time.Minute, func() (bool, error) {
		err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: name}, &v1.Backup{})
		return apierrors.IsNotFound(err), err
	})
}

// hasSnapshot says whether ids (as repoSnapshots lists them) holds id, either one possibly abbreviated.
func hasSnapshot(ids map[string]string, id string) bool {
	for s := range ids {
		if strings.HasPrefix(s, id) || strings.HasPrefix(id, s) {
			return true
		}
	}
	return false
}

// Issue 7's maintenance: a volume backed up twice with different content, the first Backup deleted (its
// snapshot forgotten); with a short frequency the node-agents prune (bytes freed) and check (OK) the
// repository, and the remaining snapshot restores byte for byte.
func TestMaintenancePrunesAndChecks(t *testing.T) {
	c := startCluster(t, clusterOptions{})
	const ns = "ledger"
	c.logRepositoryOnFailure(t, ns)
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c.cl, testPod(ns, "books", nodeA, map[string]string{annBackupVolumes: "data"}, emptyDirVolume("data")))
	c.waitPodsRunning(t, ns, 1)
	dir := c.volumeDir(t, ns, "books", "data")
	spec := v1.BackupSpec{IncludedNamespaces: []string{ns}}

	if err := writeRandomFile(filepath.Join(dir, "ledger.bin"), 6<<20, 1, 0o640); err != nil {
		t.Fatal(err)
	}
	c.createBackup(t, "first", spec)
	if b := c.waitBackup(t, "first", backupTimeout); b.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("Backup first is %s: %q", b.Status.Phase, b.Status.Errors)
	}
	first := c.volumeBackups(t, "first")[ns+"/books/data"].Status.SnapshotID
	if err := writeRandomFile(filepath.Join(dir, "ledger.bin"), 6<<20, 2, 0o640); err != nil {
		t.Fatal(err)
	}
	c.createBackup(t, "second", spec)
	if b := c.waitBackup(t, "second", backupTimeout); b.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("Backup second is %s: %q", b.Status.Phase, b.Status.Errors)
	}
	second := c.volumeBackups(t, "second")[ns+"/books/data"]

	c.deleteBackup(t, "first")
	c.waitBackupGone(t, "first")
	if ids := c.repoSnapshots(t, ns); hasSnapshot(ids, first) || !hasSnapshot(ids, second.Status.SnapshotID) {
		t.Fatalf("after deleting Backup first the repository holds %v; want %s forgotten and %s kept", ids, first, second.Status.SnapshotID)
	}
	if br := c.backupRepository(t, ns); br.Status.LastPrune != nil || br.Status.LastCheck != nil {
		t.Fatalf("maintenance ran before it was due (daily by default): %+v", br.Status)
	}

	setAt := time.Now()
	c.setMaintenance(t, ns, func(s *v1.BackupRepositorySpec) {
		s.MaintenanceFrequency = &metav1.Duration{Duration: 5 * time.Second}
		s.CheckFrequency = &metav1.Duration{Duration: 5 * time.Second}
		s.CheckReadDataPercent = ptr.To[int32](100)
	})
	// Prunes and checks keep running every 5 s, and a later prune finds nothing to free: keep the one that did.
	// Status times have whole seconds, and a check requested after a prune may end within the same one.
	var lp *v1.PruneResult
	var lc *v1.CheckResult
	c.waitFor(t, "a prune that freed bytes and a check after it", 2*time.Minute, func() (bool, error) {
		br := c.backupRepository(t, ns)
		p, k := br.Status.LastPrune, br.Status.LastCheck
		if p != nil && p.Error != "" && !p.Postponed {
			t.Fatalf("prune failed: %s", p.Error)
		}
		if k != nil && k.Error != "" {
			t.Fatalf("check failed: %s", k.Error)
		}
		if lp == nil && p != nil && p.BytesFreed > 0 {
			if br.Status.LastMaintenanceTime == nil || !br.Status.LastMaintenanceTime.Equal(&p.Time) {
				t.Errorf("lastMaintenanceTime %v, want the successful prune's end %v", br.Status.LastMaintenanceTime, p.Time)
			}
			lp = p
		}
		if lp != nil && k != nil && !k.Time.Time.Before(lp.Time.Time) {
			lc = k
		}
		return lp != nil && lc != nil, fmt.Errorf("lastPrune %+v, lastCheck %+v", p, k)
	})
	t.Logf("%.1fs after the frequency was set: prune on %s freed %d bytes (%d packs deleted) in %s; check on %s read %d packs (%d bytes) in %s",
		time.Since(setAt).Seconds(), lp.Node, lp.BytesFreed, lp.PacksDeleted, lp.Duration.Duration, lc.Node, lc.PacksRead, lc.BytesRead, lc.Duration.Duration)
	if lp.Snapshots != 1 {
		t.Errorf("prune saw %d snapshots, want 1", lp.Snapshots)
	}
	if !lc.OK || lc.ErrorCount != 0 || lc.PacksRead == 0 || lc.ReadDataPercent != 100 {
		t.Errorf("lastCheck %+v, want OK with every pack read", lc)
	}
	if lp.Node != nodeA && lp.Node != nodeB {
		t.Errorf("prune ran on %q, want a node-agent's node", lp.Node)
	}

	// Maintenance keeps running every 5 s meanwhile; the snapshot still restores byte for byte.
	target := filepath.Join(t.TempDir(), "restore")
	c.restoreSnapshot(t, ns, second.Status.SnapshotID, target)
	if err := compareTrees(dir, target); err != nil {
		t.Errorf("snapshot %s after prune: %v", second.Status.SnapshotID, err)
	}
	reasons := map[string]bool{}
	for _, ev := range c.repositoryEvents(t, ns) {
		reasons[ev.Reason] = true
	}
	for _, r := range []string{"MaintenanceRequested", "MaintenanceStarted", "PruneCompleted", "CheckCompleted"} {
		if !reasons[r] {
			t.Errorf("no %s event on the BackupRepository; events: %v", r, reasons)
		}
	}
}

// Issue 7: "prune never deletes data of a backup running at the same time". Rounds of Backups of two volumes
// on two nodes run while prunes run back to back (a 1 s frequency), each round deleting the Backup of two
// rounds before so prunes have garbage; afterwards `straddle repo check --read-data` is clean and every
// remaining snapshot restores and equals what was backed up.
func TestPruneDuringBackups(t *testing.T) {
	c := startCluster(t, clusterOptions{})
	const ns = "busy"
	const rounds = 5
	c.logRepositoryOnFailure(t, ns)
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	pods := map[string]string{"left": nodeA, "right": nodeB}
	for pod, node := range pods {
		mustCreate(t, c.cl, testPod(ns, pod, node, map[string]string{annBackupVolumes: "data"}, emptyDirVolume("data")))
	}
	c.waitPodsRunning(t, ns, len(pods))
	spec := v1.BackupSpec{IncludedNamespaces: []string{ns}}
	// A first Backup makes the repository and its BackupRepository.
	c.createBackup(t, "round-0", spec)
	c.waitBackup(t, "round-0", backupTimeout)
	c.setMaintenance(t, ns, func(s *v1.BackupRepositorySpec) {
		s.MaintenanceFrequency = &metav1.Duration{Duration: time.Second}
	})

	// Watch the prunes: each distinct lastPrune is one run.
	prunes := &pruneLog{}
	ctx, stopWatch := context.WithCancel(context.Background())
	var watching sync.WaitGroup
	watching.Go(func() { prunes.watch(ctx, c, ns) })
	defer func() {
		stopWatch()
		watching.Wait()
	}()

	// want holds, per remaining Backup and volume, the snapshot and a copy of what it backed up.
	type volumeCopy struct{ snapshot, dir string }
	want := map[string]map[string]volumeCopy{}
	// backupsRan holds when each volume backup ran (whole seconds).
	var backupsRan [][2]time.Time
	for round := 1; round <= rounds; round++ {
		for pod := range pods {
			dir := c.volumeDir(t, ns, pod, "data")
			exp := filepath.Join(t.TempDir(), "expected")
			// The copy's folder has the volume's mode (an emptyDir is 0777), which the comparison checks too.
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(exp, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(exp, fi.Mode().Perm()); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{dir, exp} {
				_ = os.Remove(filepath.Join(d, fmt.Sprintf("round-%d.bin", round-1)))
				// A file shared by every round (deduplicated) and one of this round's.
				if err := writeRandomFile(filepath.Join(d, "shared.bin"), 1<<20, 7, 0o640); err != nil {
					t.Fatal(err)
				}
				if err := writeRandomFile(filepath.Join(d, fmt.Sprintf("round-%d.bin", round)), 2<<20, uint64(100*round+len(pod)), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			name := fmt.Sprintf("round-%d", round)
			if want[name] == nil {
				want[name] = map[string]volumeCopy{}
			}
			want[name][pod] = volumeCopy{dir: exp}
		}
		name := fmt.Sprintf("round-%d", round)
		c.createBackup(t, name, spec)
		if b := c.waitBackup(t, name, backupTimeout); b.Status.Phase != v1.PhaseCompleted {
			t.Fatalf("Backup %s is %s: %q", name, b.Status.Phase, b.Status.Errors)
		}
		for key, p := range c.volumeBackups(t, name) {
			if p.Status.StartTimestamp != nil && p.Status.CompletionTimestamp != nil {
				backupsRan = append(backupsRan, [2]time.Time{p.Status.StartTimestamp.Time, p.Status.CompletionTimestamp.Time})
			}
			pod := strings.Split(key, "/")[1]
			vc := want[name][pod]
			vc.snapshot = p.Status.SnapshotID
			want[name][pod] = vc
		}
		// Garbage for the next prunes: the Backup of two rounds before goes (its finalizer forgets its
		// snapshots while prunes and the next round's backups run).
		if old := round - 2; old >= 0 {
			c.deleteBackup(t, fmt.Sprintf("round-%d", old))
			delete(want, fmt.Sprintf("round-%d", old))
		}
	}
	for old := 0; old <= rounds-2; old++ {
		c.waitBackupGone(t, fmt.Sprintf("round-%d", old))
	}
	// Two prunes that ended a second after the last deletion or later (status times have whole seconds): the
	// second of them started after it, so it found the last garbage.
	after := time.Now().Add(time.Second)
	c.waitFor(t, "a prune after the last deletion", 2*time.Minute, func() (bool, error) {
		return prunes.endedAfter(after) >= 2, nil
	})
	// Stop the prunes and let the last run end, so the checks below see a repository at rest.
	c.setMaintenance(t, ns, func(s *v1.BackupRepositorySpec) { s.MaintenanceFrequency = &metav1.Duration{Duration: 24 * time.Hour} })
	c.waitFor(t, "the last maintenance run to end", 2*time.Minute, func() (bool, error) {
		return c.backupRepository(t, ns).Status.Maintenance == nil, nil
	})
	stopWatch()
	watching.Wait()
	runs, freed, failed := prunes.summary()
	beside := prunes.overlapping(backupsRan)
	t.Logf("%d prunes ran during %d rounds of backups, %d of them while a volume backup ran, %d freed space; failures: %q", runs, rounds, beside, freed, failed)
	if runs < rounds || freed < 1 || beside < 1 {
		t.Errorf("%d prunes, %d beside a volume backup, %d freeing space: too few to test prune beside backups", runs, beside, freed)
	}
	if len(failed) > 0 {
		t.Errorf("prunes failed: %q", failed)
	}

	if res := c.repo(t, 5*time.Minute, ns, "check", "--read-data"); res.err != nil {
		t.Fatalf("check --read-data after the prunes: %s", res)
	}
	ids := c.repoSnapshots(t, ns)
	if len(ids) != 2*len(pods) {
		t.Errorf("repository holds %d snapshots, want %d (two rounds of %d volumes)", len(ids), 2*len(pods), len(pods))
	}
	for backup, vols := range want {
		for pod, vc := range vols {
			if !hasSnapshot(ids, vc.snapshot) {
				t.Errorf("snapshot %s of Backup %s (%s) is gone", vc.snapshot, backup, pod)
				continue
			}
			target := filepath.Join(t.TempDir(), "restore")
			c.restoreSnapshot(t, ns, vc.snapshot, target)
			if err := compareTrees(vc.dir, target); err != nil {
				t.Errorf("snapshot %s of Backup %s (%s): %v", vc.snapshot, backup, pod, err)
			}
		}
	}
}

// pruneLog records each prune seen in a BackupRepository's status.
type pruneLog struct {
	mu sync.Mutex
	// seen is keyed by end time (whole seconds), node and duration (milliseconds), which tell runs apart.
	seen   map[string]v1.PruneResult
	failed []string
}

func (l *pruneLog) watch(ctx context.Context, c *cluster, namespace string) {
	for ctx.Err() == nil {
		var br v1.BackupRepository
		err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: repositoryName(namespace)}, &br)
		if lp := br.Status.LastPrune; err == nil && lp != nil {
			l.mu.Lock()
			if l.seen == nil {
				l.seen = map[string]v1.PruneResult{}
			}
			key := fmt.Sprintf("%s %s %v", lp.Time.UTC().Format(time.RFC3339), lp.Node, lp.Duration)
			if _, ok := l.seen[key]; !ok {
				l.seen[key] = *lp
				if lp.Error != "" && !lp.Postponed {
					l.failed = append(l.failed, lp.Error)
				}
			}
			l.mu.Unlock()
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// endedAfter counts the prunes whose recorded end is t or later.
func (l *pruneLog) endedAfter(t time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.seen {
		if !p.Time.Time.Before(t) {
			n++
		}
	}
	return n
}

func (l *pruneLog) summary() (runs, freed int, failed []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.seen {
		if p.BytesFreed > 0 {
			freed++
		}
	}
	return len(l.seen), freed, l.failed
}

// overlapping counts the prunes whose run, to the second, overlaps one of the intervals.
func (l *pruneLog) overlapping(intervals [][2]time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, p := range l.seen {
		end := p.Time.Time
		start := end.Add(-p.Duration.Duration).Truncate(time.Second)
		for _, iv := range intervals {
			if !start.After(iv[1]) && !end.Before(iv[0]) {
				n++
				break
			}
		}
	}
	return n
}

// A node-agent killed during its prune: the controller takes it for dead when its heartbeats stop, requests
// the prune again, and the other node-agent runs it. The test holds a backup's lock on the repository so the
// first prune is still waiting to delete when its agent is killed.
func TestMaintenanceAgentKilled(t *testing.T) {
	c := startCluster(t, clusterOptions{
		ControllerArgs: []string{"--maintenance-stale-after", "3s"},
		NodeAgentArgs:  []string{"--maintenance-heartbeat-interval", "500ms"},
	})
	const ns = "orders"
	c.logRepositoryOnFailure(t, ns)
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c.cl, testPod(ns, "shelf", nodeA, map[string]string{annBackupVolumes: "data"}, emptyDirVolume("data")))
	c.waitPodsRunning(t, ns, 1)
	dir := c.volumeDir(t, ns, "shelf", "data")
	spec := v1.BackupSpec{IncludedNamespaces: []string{ns}}
	for i, name := range []string{"old", "new"} {
		if err := writeRandomFile(filepath.Join(dir, "orders.bin"), 2<<20, uint64(10+i), 0o640); err != nil {
			t.Fatal(err)
		}
		c.createBackup(t, name, spec)
		if b := c.waitBackup(t, name, backupTimeout); b.Status.Phase != v1.PhaseCompleted {
			t.Fatalf("Backup %s is %s: %q", name, b.Status.Phase, b.Status.Errors)
		}
	}
	c.deleteBackup(t, "old")
	c.waitBackupGone(t, "old")

	release := c.holdBackupLock(t, ns)
	c.setMaintenance(t, ns, func(s *v1.BackupRepositorySpec) { s.MaintenanceFrequency = &metav1.Duration{Duration: 5 * time.Second} })
	var first v1.MaintenanceRun
	c.waitFor(t, "a node-agent to claim the prune", time.Minute, func() (bool, error) {
		m := c.backupRepository(t, ns).Status.Maintenance
		if m != nil {
			first = *m
		}
		return m != nil && m.Node != "", nil
	})
	// Let it heartbeat once, so it is surely inside its run.
	time.Sleep(time.Second)
	c.agents[first.Node].kill9(t)
	other := nodeA
	if first.Node == nodeA {
		other = nodeB
	}
	killed := time.Now()
	c.waitFor(t, "the prune requested again and claimed by "+other, time.Minute, func() (bool, error) {
		m := c.backupRepository(t, ns).Status.Maintenance
		return m != nil && m.ID != first.ID && m.Node == other, fmt.Errorf("maintenance %+v", m)
	})
	t.Logf("%s claimed the prune again %.1fs after %s was killed", other, time.Since(killed).Seconds(), first.Node)
	release()
	var lp *v1.PruneResult
	c.waitFor(t, "the prune to end on "+other, 2*time.Minute, func() (bool, error) {
		lp = c.backupRepository(t, ns).Status.LastPrune
		return lp != nil, nil
	})
	if lp.Node != other || lp.Error != "" || lp.BytesFreed <= 0 {
		t.Errorf("lastPrune %+v, want %s's prune freeing the deleted Backup's data", lp, other)
	}
	reasons := map[string]bool{}
	for _, ev := range c.repositoryEvents(t, ns) {
		reasons[ev.Reason] = true
	}
	if !reasons["MaintenanceRerequested"] {
		t.Errorf("no MaintenanceRerequested event; events: %v", reasons)
	}
	pvb := c.volumeBackups(t, "new")[ns+"/shelf/data"]
	target := filepath.Join(t.TempDir(), "restore")
	c.restoreSnapshot(t, ns, pvb.Status.SnapshotID, target)
	if err := compareTrees(dir, target); err != nil {
		t.Errorf("snapshot %s after the prune: %v", pvb.Status.SnapshotID, err)
	}
}

// holdBackupLock takes a shared lock on namespace's repository, as a running backup does, until the returned
// func is called: prune plans beside it but cannot delete.
func (c *cluster) holdBackupLock(t *testing.T, namespace string) (release func()) {
	t.Helper()
	ctx := context.Background()
	var sec corev1.Secret
	if err := c.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: deploy.RepositoryPasswordSecret}, &sec); err != nil {
		t.Fatal(err)
	}
	be, err := s3.Open(ctx, c.minio.Options(c.bucket, "repositories/"+namespace))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, sec.Data[deploy.RepositoryPasswordKey], repo.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	held, stop, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- lock.WithLock(ctx, r, lock.Shared, "backup", lock.Options{}, func(context.Context) error {
			close(held)
			<-stop
			return nil
		})
	}()
	select {
	case <-held:
	case err := <-done:
		t.Fatalf("take a backup lock: %v", err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(stop)
			if err := <-done; err != nil {
				t.Errorf("backup lock: %v", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}
