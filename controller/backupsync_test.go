package controller

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/mem"
)

var syncNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// syncBackup builds a Backup of location "default" in phase, completed ago before syncNow, changed by opts.
func syncBackup(name string, phase v1.Phase, ago time.Duration, opts ...func(*v1.Backup)) v1.Backup {
	b := v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle"},
		Spec: v1.BackupSpec{StorageLocation: "default"}, Status: v1.BackupStatus{Phase: phase}}
	if phase != v1.PhaseNew && phase != v1.PhaseInProgress && phase != "" {
		t := metav1.NewTime(syncNow.Add(-ago))
		b.Status.CompletionTimestamp = &t
	}
	for _, o := range opts {
		o(&b)
	}
	return b
}

func syncedFrom(loc string) func(*v1.Backup) {
	return func(b *v1.Backup) { b.Annotations = map[string]string{v1.SyncedFromAnnotation: loc} }
}

func deleting(b *v1.Backup) {
	b.DeletionTimestamp = &metav1.Time{Time: syncNow}
	b.Finalizers = []string{BackupFinalizer}
}

func TestStoredFolders(t *testing.T) {
	got := storedFolders([]string{
		"a/backup.json", "a/podvolumebackups.json", "a/resources.tar.zst",
		"b/podvolumebackups.json", // being written, or being removed: backup.json is missing
		"c/resources.tar.zst", "c/backup.json",
		"stray-object", // not in a folder
		"/x",
	})
	want := map[string]bool{"a": true, "b": false, "c": true}
	if len(got) != len(want) {
		t.Fatalf("folders %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("folder %s: complete %v, want %v", k, got[k], v)
		}
	}
}

func TestPlanSync(t *testing.T) {
	const grace = time.Minute
	for _, c := range []struct {
		name    string
		folders map[string]bool
		backups []v1.Backup
		want    syncPlan
	}{
		{name: "another cluster's backups are created; this cluster's are left",
			folders: map[string]bool{"theirs": true, "ours": true, "half-written": false},
			backups: []v1.Backup{syncBackup("ours", v1.PhaseCompleted, time.Hour)},
			want:    syncPlan{Create: []string{"theirs"}}},
		{name: "a name the cluster has is never created again, whatever its location or state",
			folders: map[string]bool{"x": true, "y": true},
			backups: []v1.Backup{
				syncBackup("x", v1.PhaseCompleted, time.Hour, func(b *v1.Backup) { b.Spec.StorageLocation = "other" }),
				syncBackup("y", v1.PhaseCompleted, time.Hour, deleting)}},
		{name: "names that cannot be Backups are not created",
			folders: map[string]bool{"Upper": true, strings.Repeat("a", 64): true, "ok": true},
			want:    syncPlan{Create: []string{"ok"}}},
		{name: "a synced Backup whose folder is gone is removed, even just synced",
			folders: map[string]bool{"half": false},
			backups: []v1.Backup{
				syncBackup("gone", v1.PhaseCompleted, time.Second, syncedFrom("default")),
				syncBackup("half", v1.PhaseCompleted, time.Second, syncedFrom("default"))},
			want: syncPlan{Remove: []string{"gone", "half"}}},
		{name: "a synced Backup of another location is not this one's to remove",
			backups: []v1.Backup{syncBackup("elsewhere", v1.PhaseCompleted, time.Hour, syncedFrom("other"))}},
		{name: "this cluster's finished Backups are removed only after the grace period",
			backups: []v1.Backup{
				syncBackup("old", v1.PhaseCompleted, grace+time.Second),
				syncBackup("old-partial", v1.PhasePartiallyFailed, time.Hour),
				syncBackup("just-done", v1.PhaseCompleted, grace-time.Second)},
			want: syncPlan{Remove: []string{"old", "old-partial"}}},
		{name: "New, InProgress, Failed, Deleting and deleted Backups are never removed",
			backups: []v1.Backup{
				syncBackup("new", v1.PhaseNew, 0),
				syncBackup("unset", "", 0),
				syncBackup("running", v1.PhaseInProgress, 0),
				syncBackup("failed", v1.PhaseFailed, time.Hour),
				syncBackup("marked", v1.PhaseDeleting, time.Hour),
				syncBackup("deleted", v1.PhaseCompleted, time.Hour, deleting),
				syncBackup("synced-deleted", v1.PhaseCompleted, time.Hour, syncedFrom("default"), deleting)}},
		{name: "this cluster's Backups of another location are left",
			backups: []v1.Backup{syncBackup("other", v1.PhaseCompleted, time.Hour, func(b *v1.Backup) { b.Spec.StorageLocation = "other" })}},
		{name: "a synced Backup without a status is resumed while its folder is there",
			folders: map[string]bool{"half-synced": true, "done": true},
			backups: []v1.Backup{
				syncBackup("half-synced", "", 0, syncedFrom("default")),
				syncBackup("done", v1.PhaseCompleted, time.Hour, syncedFrom("default"))},
			want: syncPlan{Resume: []string{"half-synced"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := planSync("default", c.folders, c.backups, syncNow, grace)
			if !slices.Equal(got.Create, c.want.Create) || !slices.Equal(got.Remove, c.want.Remove) || !slices.Equal(got.Resume, c.want.Resume) {
				t.Errorf("plan %+v, want %+v", got, c.want)
			}
		})
	}
}

// storeBackup writes a backup's folder as the Backup reconciler does, with md changed by change.
func storeBackup(t *testing.T, be storage.Backend, name string, change func(*BackupMetadata), pvbs ...v1.PodVolumeBackup) {
	t.Helper()
	ctx := context.Background()
	b := syncBackup(name, v1.PhaseCompleted, time.Hour, func(b *v1.Backup) {
		b.Labels = map[string]string{v1.ScheduleLabel: "nightly"}
		b.Status.VolumesTotal = len(pvbs)
	})
	md := BackupMetadata{FormatVersion: BackupMetadataFormat, Backup: &b, Warnings: []string{"a warning"},
		Resources: []v1.ResourceCount{{Resource: "pods", Count: 2}}}
	if change != nil {
		change(&md)
	}
	if err := putJSON(ctx, be, name+"/"+PodVolumeBackupsName, v1.PodVolumeBackupList{Items: pvbs}); err != nil {
		t.Fatal(err)
	}
	if err := putJSON(ctx, be, name+"/"+BackupMetadataName, md); err != nil {
		t.Fatal(err)
	}
}

func TestReadSyncSource(t *testing.T) {
	ctx := context.Background()
	be := mem.New()
	pvb := v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Name: "good-pvb", Labels: map[string]string{v1.NodeLabel: "node-a", v1.BackupLabel: "good"}},
		Spec:   v1.PodVolumeBackupSpec{Node: "node-a", Volume: "data", StorageLocation: "theirs"},
		Status: v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseCompleted, SnapshotID: "abc"}}
	storeBackup(t, be, "good", nil, pvb)
	storeBackup(t, be, "future", func(md *BackupMetadata) { md.FormatVersion = BackupMetadataFormat + 1 })
	storeBackup(t, be, "renamed", func(md *BackupMetadata) { md.Backup.Name = "original" })
	storeBackup(t, be, "running", func(md *BackupMetadata) { md.Backup.Status.Phase = v1.PhaseInProgress })
	if err := storage.PutBytes(ctx, be, "garbage/"+BackupMetadataName, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	storeBackup(t, be, "no-volumes", nil)
	if err := be.Delete(ctx, "no-volumes/"+PodVolumeBackupsName); err != nil {
		t.Fatal(err)
	}

	src, problem, err := readSyncSource(ctx, be, "good", "good")
	if err != nil || problem != "" {
		t.Fatalf("good: problem %q, err %v", problem, err)
	}
	if len(src.PodVolumeBackups) != 1 || src.PodVolumeBackups[0].Status.SnapshotID != "abc" || src.Metadata.Backup.Labels[v1.ScheduleLabel] != "nightly" {
		t.Errorf("good: read %+v", src)
	}
	for name, want := range map[string]string{
		"future":     "format version 2",
		"renamed":    `describes backup "original"`,
		"running":    "not terminal",
		"garbage":    "unreadable",
		"no-volumes": "no podvolumebackups.json",
		"missing":    "gone",
	} {
		_, problem, err := readSyncSource(ctx, be, name, name)
		if err != nil || !strings.Contains(problem, want) {
			t.Errorf("%s: problem %q, err %v; want a problem with %q", name, problem, err, want)
		}
	}
}

func TestSyncedObjects(t *testing.T) {
	loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "mine", Namespace: "straddle"}}
	stored := syncBackup("b1", v1.PhaseCompleted, time.Hour, func(b *v1.Backup) {
		b.Labels = map[string]string{v1.ScheduleLabel: "nightly", "team": "a"}
		b.Annotations = map[string]string{"theirs": "x"}
		b.Spec.StorageLocation = "their-name"
		b.UID, b.ResourceVersion, b.Namespace = "their-uid", "42", "their-ns"
		b.Status.Warnings = nil
	})
	b := syncedBackup(&stored, loc, "straddle")
	if b.Namespace != "straddle" || b.UID != "" || b.ResourceVersion != "" || b.Spec.StorageLocation != "mine" ||
		b.Labels[v1.ScheduleLabel] != "nightly" || b.Annotations[v1.SyncedFromAnnotation] != "mine" || len(b.Annotations) != 1 ||
		!slices.Equal(b.Finalizers, []string{BackupFinalizer}) {
		t.Errorf("synced Backup %+v", b.ObjectMeta)
	}
	st := storedStatus(&BackupMetadata{Backup: &stored, Warnings: []string{"kept beside"}, Resources: []v1.ResourceCount{{Resource: "pods", Count: 1}}})
	if st.Phase != v1.PhaseCompleted || st.CompletionTimestamp == nil || !slices.Equal(st.Warnings, []string{"kept beside"}) || len(st.Resources) != 1 {
		t.Errorf("status %+v", st)
	}

	pvb := &v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Name: "p1", UID: "their-pvb", ResourceVersion: "7",
		Labels: map[string]string{v1.NodeLabel: "node-a", v1.BackupLabel: "b1"}, OwnerReferences: []metav1.OwnerReference{{Name: "b1", UID: "their-uid"}}},
		Spec: v1.PodVolumeBackupSpec{Node: "node-a", Volume: "data", StorageLocation: "their-name"}}
	got := syncedPodVolumeBackup(pvb, loc, b)
	if _, ok := got.Labels[v1.NodeLabel]; ok {
		t.Errorf("synced PodVolumeBackup has the node label, so a node-agent would take it: %v", got.Labels)
	}
	if got.Labels[v1.BackupLabel] != "b1" || got.Annotations[v1.SyncedFromAnnotation] != "mine" || got.UID != "" || got.ResourceVersion != "" ||
		len(got.OwnerReferences) != 0 || got.Spec.StorageLocation != "mine" || got.Spec.Node != "node-a" || got.Namespace != "straddle" {
		t.Errorf("synced PodVolumeBackup %+v %+v", got.ObjectMeta, got.Spec)
	}
}
