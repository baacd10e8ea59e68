package controller

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// syncPlan is what one sync of one storage location does. It is decided from a listing alone; every step is
// checked against storage again before it changes the cluster, because a listing may lag behind writes.
type syncPlan struct {
	// Create names stored backups the cluster has no Backup of, to be created from their backup.json.
	Create []string
	// Resume names Backups synced from this location whose creation did not finish (their status was never
	// set): their PodVolumeBackups and status are written again.
	Resume []string
	// Remove names Backups of this location whose folder has no backup.json any more.
	Remove []string
}

// storedFolders reads a listing of a location's backups/ folder (names relative to it, "<backup>/<object>")
// into the set of backup folders, each true when it holds backup.json: written last, it is what makes a
// folder a whole backup, and deleted first, so a folder being removed no longer counts.
func storedFolders(names []string) map[string]bool {
	folders := map[string]bool{}
	for _, n := range names {
		dir, object, ok := strings.Cut(n, "/")
		if !ok || dir == "" {
			continue
		}
		folders[dir] = folders[dir] || object == BackupMetadataName
	}
	return folders
}

// planSync decides what to create and remove for location, given its folders (from storedFolders) and the
// install namespace's Backups. A Backup is removed when its folder lost backup.json and it is either synced
// from this location, or a finished backup of this location (Completed or PartiallyFailed: those always wrote
// backup.json) that completed more than grace before now, which covers a listing that does not show a
// just-written backup yet. New and InProgress Backups, Failed ones (a failure before the end writes nothing),
// and Backups being deleted are never removed.
func planSync(location string, folders map[string]bool, backups []v1.Backup, now time.Time, grace time.Duration) syncPlan {
	var p syncPlan
	have := map[string]bool{}
	for i := range backups {
		b := &backups[i]
		have[b.Name] = true
		if !b.DeletionTimestamp.IsZero() || !ofLocation(b, location) {
			continue
		}
		_, synced := b.Annotations[v1.SyncedFromAnnotation]
		switch {
		case folders[b.Name]:
			if synced && b.Status.Phase == "" {
				p.Resume = append(p.Resume, b.Name)
			}
		case synced:
			p.Remove = append(p.Remove, b.Name)
		case finishedBefore(b, now.Add(-grace)):
			p.Remove = append(p.Remove, b.Name)
		}
	}
	for name, complete := range folders {
		if complete && !have[name] && syncableName(name) {
			p.Create = append(p.Create, name)
		}
	}
	slices.Sort(p.Create)
	slices.Sort(p.Resume)
	slices.Sort(p.Remove)
	return p
}

// ofLocation tells whether b's data lives in location: a synced Backup by the location it came from, any
// other by the location its spec pins (set when it started).
func ofLocation(b *v1.Backup, location string) bool {
	if from, synced := b.Annotations[v1.SyncedFromAnnotation]; synced {
		return from == location
	}
	return b.Spec.StorageLocation == location
}

// finishedBefore tells whether b completed or partially failed before t.
func finishedBefore(b *v1.Backup, t time.Time) bool {
	if b.Status.Phase != v1.PhaseCompleted && b.Status.Phase != v1.PhasePartiallyFailed {
		return false
	}
	return b.Status.CompletionTimestamp != nil && b.Status.CompletionTimestamp.Time.Before(t)
}

// syncableName tells whether a folder's name can be a Backup's: a valid object name that fits in the
// backup label of its PodVolumeBackups.
func syncableName(name string) bool {
	return len(name) <= maxNameLength && len(validation.IsDNS1123Subdomain(name)) == 0
}
