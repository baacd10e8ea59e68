//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/storage/s3"
)

// pickupTimeout bounds how long a new Backup may wait for the controller to give it a phase; past it the
// controller is taken to have no Backup reconciler, rather than waiting out the whole backup timeout.
const pickupTimeout = time.Minute

func terminalBackup(p v1.Phase) bool {
	return p == v1.PhaseCompleted || p == v1.PhasePartiallyFailed || p == v1.PhaseFailed
}

func terminalVolume(p v1.VolumePhase) bool {
	return p == v1.VolumePhaseCompleted || p == v1.VolumePhaseFailed || p == v1.VolumePhaseCanceled
}

// createBackup creates a Backup in the install namespace through the API, as a GitOps tool would.
func (c *cluster) createBackup(t testing.TB, name string, spec v1.BackupSpec) {
	t.Helper()
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: installNamespace}, Spec: spec}
	if err := c.cl.Create(context.Background(), b); err != nil {
		t.Fatalf("create Backup %s: %v", name, err)
	}
}

// waitPickedUp waits until the controller has given a Backup a phase past New. Past pickupTimeout the
// controller is taken to have no Backup reconciler, rather than waiting out a whole backup's timeout.
func (c *cluster) waitPickedUp(t testing.TB, name string) {
	t.Helper()
	var b v1.Backup
	for deadline := time.Now().Add(pickupTimeout); ; time.Sleep(100 * time.Millisecond) {
		err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: name}, &b)
		if err == nil && b.Status.Phase != "" && b.Status.Phase != v1.PhaseNew {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Backup %s still has phase %q after %v (%v): the controller has no Backup reconciler, or it is stuck", name, b.Status.Phase, pickupTimeout, err)
		}
		if err := c.serversDied(); err != nil {
			t.Fatalf("waiting for Backup %s to start: %v", name, err)
		}
	}
}

// waitBackup waits until the Backup reaches Completed, PartiallyFailed or Failed, and returns it. It fails
// the test (the cluster's cleanup then dumps statuses and logs) when the controller does not pick it up (see
// waitPickedUp), at timeout, or when a server process dies.
func (c *cluster) waitBackup(t testing.TB, name string, timeout time.Duration) *v1.Backup {
	t.Helper()
	start := time.Now()
	c.waitPickedUp(t, name)
	var b v1.Backup
	c.waitFor(t, "Backup "+name+" to reach a terminal phase", timeout, func() (bool, error) {
		if err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: name}, &b); err != nil {
			return false, err
		}
		return terminalBackup(b.Status.Phase), fmt.Errorf("phase %q, %d of %d volumes done", b.Status.Phase, b.Status.VolumesCompleted, b.Status.VolumesTotal)
	})
	t.Logf("Backup %s: %s in %.1fs (%d volumes, %d completed, %d failed)", name, b.Status.Phase, time.Since(start).Seconds(),
		b.Status.VolumesTotal, b.Status.VolumesCompleted, b.Status.VolumesFailed)
	return &b
}

// volumeBackups lists the PodVolumeBackups of a Backup (label straddle.io/backup), keyed "namespace/pod/volume".
func (c *cluster) volumeBackups(t testing.TB, backup string) map[string]v1.PodVolumeBackup {
	t.Helper()
	var list v1.PodVolumeBackupList
	if err := c.cl.List(context.Background(), &list, client.InNamespace(installNamespace), client.MatchingLabels{v1.BackupLabel: backup}); err != nil {
		t.Fatalf("list the PodVolumeBackups of %s: %v", backup, err)
	}
	out := map[string]v1.PodVolumeBackup{}
	for _, p := range list.Items {
		key := p.Spec.Pod.Namespace + "/" + p.Spec.Pod.Name + "/" + p.Spec.Volume
		if _, dup := out[key]; dup {
			t.Errorf("Backup %s has two PodVolumeBackups of %s", backup, key)
		}
		out[key] = p
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// phaseWatch polls every Backup and PodVolumeBackup while backups run and records each time a Backup is seen
// terminal while one of its PodVolumeBackups is not (DESIGN §6: a Backup is Completed only when every
// PodVolumeBackup is terminal). Backups are read before their PodVolumeBackups, and a PodVolumeBackup never
// leaves a terminal phase, so a violation seen is a real one. The first time a Backup is seen Completed, its
// metadata must already be in the bucket (DESIGN §6: written before the Backup turns Completed), which a
// check after the test's wait could not tell from metadata written just after.
type phaseWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	// stored, when set, says why a Completed Backup's metadata is not in the bucket, or nil.
	stored func(ctx context.Context, backup string) error

	mu         sync.Mutex
	violations []string
	polls      int
	checked    map[string]bool // Completed Backups whose metadata was looked for
}

// backupMetadata are the objects every Completed Backup has in its folder, backups/<name>/.
var backupMetadata = []string{"backup.json", "resources.tar.zst"}

func (c *cluster) watchPhases(t testing.TB) *phaseWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	be, err := s3.Open(ctx, c.minio.Options(c.bucket, ""))
	if err != nil {
		cancel()
		t.Fatalf("open bucket %s: %v", c.bucket, err)
	}
	w := &phaseWatch{cancel: cancel, done: make(chan struct{}), checked: map[string]bool{},
		stored: func(ctx context.Context, backup string) error {
			for _, name := range backupMetadata {
				key := "backups/" + backup + "/" + name
				if _, err := be.Stat(ctx, key); err != nil {
					return fmt.Errorf("%s: %w", key, err)
				}
			}
			return nil
		}}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			w.poll(ctx, c.cl)
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.stopWatch)
	return w
}

func (w *phaseWatch) poll(ctx context.Context, cl client.Client) {
	var backups v1.BackupList
	if err := cl.List(ctx, &backups, client.InNamespace(installNamespace)); err != nil {
		return
	}
	var pvbs v1.PodVolumeBackupList
	if err := cl.List(ctx, &pvbs, client.InNamespace(installNamespace)); err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.polls++
	for _, b := range backups.Items {
		if !terminalBackup(b.Status.Phase) {
			continue
		}
		if b.Status.Phase == v1.PhaseCompleted && w.stored != nil && !w.checked[b.Name] {
			w.checked[b.Name] = true
			if err := w.stored(ctx, b.Name); err != nil && ctx.Err() == nil {
				w.violations = append(w.violations, fmt.Sprintf("Backup %s was Completed before its metadata was in the bucket: %v", b.Name, err))
			}
		}
		for _, p := range pvbs.Items {
			if p.Labels[v1.BackupLabel] == b.Name && !terminalVolume(p.Status.Phase) {
				w.violations = append(w.violations, fmt.Sprintf("Backup %s was %s while PodVolumeBackup %s (%s/%s volume %s) was %q",
					b.Name, b.Status.Phase, p.Name, p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume, p.Status.Phase))
			}
		}
	}
}

func (w *phaseWatch) stopWatch() {
	w.cancel()
	<-w.done
}

// check stops the watch and fails the test on any violation it saw.
func (w *phaseWatch) check(t testing.TB) {
	t.Helper()
	w.stopWatch()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.violations) > 0 {
		t.Errorf("a Backup was terminal while a PodVolumeBackup still ran (%d times), first ones:\n  %s", len(w.violations),
			strings.Join(w.violations[:min(len(w.violations), 5)], "\n  "))
	}
	t.Logf("phase watch: %d polls, no Backup terminal before its volumes; %d Completed with their metadata stored", w.polls, len(w.checked))
}
