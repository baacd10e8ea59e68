package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/storage"
)

// DefaultBackupSyncPeriod is how often the storage locations' backups are compared with the cluster's.
const DefaultBackupSyncPeriod = time.Minute

// BackupSyncer makes the cluster's Backups follow what its storage locations hold: every Period it lists
// backups/ in each Available location of the install namespace, creates the Backups (with their
// PodVolumeBackups) that another cluster wrote there, and removes the Backups whose folder is gone. So a new
// cluster pointed at the same bucket can restore, and a backup deleted by another cluster disappears here.
//
// It is a manager Runnable on a clock rather than a reconciler: the work is a sweep of whole listings, not a
// response to an object's change, and a reconciler keyed by location would be woken by every status write of
// the location checker, needing its own rate limit to keep the period. It runs only in the leader.
type BackupSyncer struct {
	// Client creates and deletes Backups and PodVolumeBackups, and lists storage locations from the cache.
	Client client.Client
	// APIReader lists the Backups uncached (a lagging cache would make a Backup just created look missing)
	// and reads credentials Secrets.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Events    events.EventRecorder
	// Metrics counts what ends (nil: nothing is counted).
	Metrics *Metrics
	// Namespace is the install namespace: its storage locations are synced into its Backups.
	Namespace string
	// Period is the time between syncs (DefaultBackupSyncPeriod if zero).
	Period time.Duration
	// Grace is how long after it completed a Backup of this cluster must be listed in storage before its
	// absence counts as deletion (Period if zero): a listing may not show a just-written backup yet.
	Grace time.Duration

	mu sync.Mutex
	// skipped remembers the stored backups that cannot be synced and why, so each is logged once, not every
	// period.
	skipped map[string]string
}

// NeedLeaderElection keeps the sync to the leader: two controllers creating the same Backups would only
// conflict.
func (s *BackupSyncer) NeedLeaderElection() bool { return true }

// Start syncs at once and then every Period until ctx ends. A failed sync is logged and tried again on the
// next period: nothing is removed on a listing that failed.
func (s *BackupSyncer) Start(ctx context.Context) error {
	// Named, so its lines are told from the reconcilers'.
	ctx = ctrl.LoggerInto(ctx, ctrl.LoggerFrom(ctx).WithName("backup-sync"))
	t := time.NewTicker(s.period())
	defer t.Stop()
	for {
		if err := s.SyncOnce(ctx); err != nil && ctx.Err() == nil {
			ctrl.LoggerFrom(ctx).Error(err, "backup sync failed; trying again next period", "period", s.period())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// SyncOnce syncs every Available storage location of the install namespace once; a location that fails does
// not stop the others.
func (s *BackupSyncer) SyncOnce(ctx context.Context) error {
	var locs v1.BackupStorageLocationList
	if err := s.Client.List(ctx, &locs, client.InNamespace(s.Namespace)); err != nil {
		return fmt.Errorf("list storage locations: %w", err)
	}
	var errs []error
	for i := range locs.Items {
		loc := &locs.Items[i]
		if loc.Status.Phase != v1.LocationAvailable {
			// Unavailable, or not checked yet: its listing would fail or mislead; the checker looks again.
			continue
		}
		if err := s.syncLocation(ctx, loc); err != nil {
			errs = append(errs, fmt.Errorf("sync storage location %s: %w", loc.Name, err))
		}
	}
	return errors.Join(errs...)
}

// syncLocation lists loc's backups/ folder first and the cluster's Backups second: a Backup this cluster
// deletes loses its backup.json before its object goes, so it is never taken for another cluster's backup.
func (s *BackupSyncer) syncLocation(ctx context.Context, loc *v1.BackupStorageLocation) error {
	// The location's root, not backups/: opening a folder of a filesystem location creates it, and a listing
	// should change nothing.
	be, err := bsl.OpenStorage(ctx, s.APIReader, loc, "")
	if err != nil {
		return fmt.Errorf("open storage: %w", err)
	}
	var names []string
	if err := be.List(ctx, bsl.BackupsDir+"/", func(info storage.Info) error {
		names = append(names, strings.TrimPrefix(info.Name, bsl.BackupsDir+"/"))
		return nil
	}); err != nil {
		return fmt.Errorf("list %s/%s: %w", be.Location(), bsl.BackupsDir, err)
	}
	var backups v1.BackupList
	if err := s.APIReader.List(ctx, &backups, client.InNamespace(s.Namespace)); err != nil {
		return fmt.Errorf("list backups: %w", err)
	}
	byName := map[string]*v1.Backup{}
	for i := range backups.Items {
		byName[backups.Items[i].Name] = &backups.Items[i]
	}
	plan := planSync(loc.Name, storedFolders(names), backups.Items, s.Clock.Now(), s.grace())
	var errs []error
	for _, name := range plan.Create {
		errs = append(errs, s.create(ctx, loc, be, name, nil))
	}
	for _, name := range plan.Resume {
		errs = append(errs, s.create(ctx, loc, be, name, byName[name]))
	}
	for _, name := range plan.Remove {
		errs = append(errs, s.remove(ctx, loc, be, byName[name]))
	}
	return errors.Join(errs...)
}

// remove deletes a Backup whose folder the listing no longer shows, once a read of its backup.json confirms
// it is gone (be is the location's root). Its finalizer then forgets what snapshots are left; the folder is already gone.
func (s *BackupSyncer) remove(ctx context.Context, loc *v1.BackupStorageLocation, be storage.Backend, b *v1.Backup) error {
	_, err := be.Stat(ctx, bsl.BackupPath(b.Name)+"/"+BackupMetadataName)
	switch {
	case err == nil:
		// The listing lagged behind storage: the backup is there.
		return nil
	case !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("check backup %s in %s: %w", b.Name, be.Location(), err)
	}
	uid := b.UID
	if err := s.Client.Delete(ctx, b, client.Preconditions{UID: &uid}); err != nil {
		// Gone already, or replaced by a new Backup of the same name: nothing of ours to remove.
		return client.IgnoreNotFound(ignoreConflict(err))
	}
	s.Metrics.synced(syncRemoved)
	s.Events.Eventf(b, nil, corev1.EventTypeNormal, "RemovedFromStorage", "Sync",
		"backup %s is no longer in storage location %s (deleted by another cluster or by hand): removing it", b.Name, loc.Name)
	ctrl.LoggerFrom(ctx).Info("removed a backup gone from storage", "backup", b.Name, "location", loc.Name)
	return nil
}

// skip logs once why a stored backup is not synced.
func (s *BackupSyncer) skip(ctx context.Context, loc *v1.BackupStorageLocation, name, problem string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := loc.Name + "/" + name
	if s.skipped[key] == problem {
		return
	}
	if s.skipped == nil {
		s.skipped = map[string]string{}
	}
	s.skipped[key] = problem
	ctrl.LoggerFrom(ctx).Info("stored backup not synced", "backup", name, "location", loc.Name, "reason", problem)
}

func (s *BackupSyncer) period() time.Duration {
	if s.Period > 0 {
		return s.Period
	}
	return DefaultBackupSyncPeriod
}

func (s *BackupSyncer) grace() time.Duration {
	if s.Grace > 0 {
		return s.Grace
	}
	return s.period()
}
