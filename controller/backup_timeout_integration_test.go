//go:build integration

package controller

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo/storage"
)

// A backup that runs out of time fails its unfinished volumes with "timed out after …", keeps the finished
// one in its stored metadata, and ends PartiallyFailed; the install's default applies when the spec says
// nothing, and a backup whose volumes all finished in time is not touched by its deadline.
func TestBackupTimesOutKeepingWhatFinished(t *testing.T) {
	e := newEnv(t, func(r *BackupReconciler) { r.DefaultTimeout = time.Hour }, nil)
	ns := e.namespace("to")
	e.pod(newPod(ns, "p").emptyDir("done", "stuck", "new").ann(AnnotationBackupVolumes, "done,stuck,new"))

	e.backup("slow", v1.BackupSpec{IncludedNamespaces: []string{ns}, Timeout: &metav1.Duration{Duration: 5 * time.Second}})
	pvbs := e.waitPVBs("slow", 3)
	done := findPVB(t, pvbs, "p", "done")
	stuck := findPVB(t, pvbs, "p", "stuck")
	// The test plays the node-agents, quickly: the backup's clock runs.
	const snap = "0123456789abcdef"
	e.setPVB(done.Name, v1.VolumePhaseCompleted, v1.Progress{}, snap, "")
	// "stuck" was taken by a node-agent that never ends it; "new" was never taken.
	e.setPVB(stuck.Name, v1.VolumePhaseInProgress, v1.Progress{BytesDone: 1, BytesTotal: 10}, "", "")

	bk := e.waitBackup("slow", "ended", func(b *v1.Backup) bool { return b.Status.Phase != v1.PhaseInProgress && b.Status.Phase != "" })
	if bk.Status.Phase != v1.PhasePartiallyFailed || bk.Status.VolumesCompleted != 1 || bk.Status.VolumesFailed != 2 {
		t.Fatalf("timed-out backup: phase %s, %d completed, %d failed; want PartiallyFailed, 1, 2", bk.Status.Phase, bk.Status.VolumesCompleted, bk.Status.VolumesFailed)
	}
	if took := bk.Status.CompletionTimestamp.Sub(bk.Status.StartTimestamp.Time); took < 5*time.Second || took > 20*time.Second {
		t.Errorf("the backup ended %s after its start; want just after its 5s timeout", took)
	}
	if !meta.IsStatusConditionTrue(bk.Status.Conditions, ConditionTimedOut) {
		t.Errorf("conditions %+v: want TimedOut True", bk.Status.Conditions)
	}
	if !slices.ContainsFunc(bk.Status.Errors, func(s string) bool { return strings.Contains(s, "timed out after 5s") }) {
		t.Errorf("errors %q: want the timeout", bk.Status.Errors)
	}
	for _, p := range e.pvbs("slow") {
		switch p.Spec.Volume {
		case "done":
			if p.Status.Phase != v1.VolumePhaseCompleted || p.Status.SnapshotID != snap {
				t.Errorf("finished volume: %s %q; want Completed with snapshot %s", p.Status.Phase, p.Status.SnapshotID, snap)
			}
		default:
			if p.Status.Phase != v1.VolumePhaseFailed || p.Status.Message != "timed out after 5s" || p.Status.CompletionTimestamp == nil {
				t.Errorf("volume %s: %s %q; want Failed \"timed out after 5s\" with a completion time", p.Spec.Volume, p.Status.Phase, p.Status.Message)
			}
		}
	}
	data, err := storage.ReadAll(e.ctx, e.storage(bsl.BackupPath("slow")), PodVolumeBackupsName)
	if err != nil {
		t.Fatal(err)
	}
	var stored v1.PodVolumeBackupList
	if err := json.Unmarshal(data, &stored); err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(stored.Items, func(p v1.PodVolumeBackup) bool { return p.Status.SnapshotID == snap }); len(stored.Items) != 3 || i < 0 {
		t.Errorf("stored %s holds %d PodVolumeBackups, the finished one at %d; want all 3 with snapshot %s", PodVolumeBackupsName, len(stored.Items), i, snap)
	}
	waitFor(t, "TimedOut event", func() bool { return slices.Contains(e.eventReasons("slow"), "TimedOut") })

	// The install's default (an hour here) bounds a backup that says nothing; one that finished is Completed.
	e.backup("quick", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	for _, p := range e.waitPVBs("quick", 3) {
		e.setPVB(p.Name, v1.VolumePhaseCompleted, v1.Progress{}, "s", "")
	}
	bk = e.waitPhase("quick", v1.PhaseCompleted)
	if meta.IsStatusConditionTrue(bk.Status.Conditions, ConditionTimedOut) || len(bk.Status.Errors) > 0 {
		t.Errorf("backup within its timeout: conditions %+v, errors %q", bk.Status.Conditions, bk.Status.Errors)
	}

	// Nothing finished: Failed.
	e.backup("none", v1.BackupSpec{IncludedNamespaces: []string{ns}, Timeout: &metav1.Duration{Duration: 2 * time.Second}})
	e.waitPVBs("none", 3)
	bk = e.waitPhase("none", v1.PhaseFailed)
	if bk.Status.VolumesFailed != 3 {
		t.Errorf("backup of which nothing finished: %d failed, want 3", bk.Status.VolumesFailed)
	}
}
