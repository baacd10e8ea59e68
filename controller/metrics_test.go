package controller

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// Every reason neverBackedUp and the selection give maps to a short label value, not "other": a new kind of
// skip must be given its label here.
func TestSkipReasonCoversEveryReasonTheSelectionGives(t *testing.T) {
	block := corev1.PersistentVolumeBlock
	pvcs := map[string]*corev1.PersistentVolumeClaim{"ns/raw": {ObjectMeta: metav1.ObjectMeta{Name: "raw"}, Spec: corev1.PersistentVolumeClaimSpec{VolumeMode: &block}}}
	for want, src := range map[string]corev1.VolumeSource{
		"hostPath":    {HostPath: &corev1.HostPathVolumeSource{Path: "/x"}},
		"secret":      {Secret: &corev1.SecretVolumeSource{}},
		"configMap":   {ConfigMap: &corev1.ConfigMapVolumeSource{}},
		"projected":   {Projected: &corev1.ProjectedVolumeSource{}},
		"downwardAPI": {DownwardAPI: &corev1.DownwardAPIVolumeSource{}},
		"block":       {PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "raw"}},
	} {
		reason := neverBackedUp("ns", corev1.Volume{Name: "v", VolumeSource: src}, pvcs)
		if got := SkipReason(v1.SkippedVolume{Reason: reason}); got != want {
			t.Errorf("SkipReason(%q) = %q, want %q", reason, got, want)
		}
	}
	sel := SelectVolumes([]corev1.Pod{newPod("ns", "p").ann(AnnotationBackupVolumes, "data").emptyDir("data").phase(corev1.PodPending).pod}, nil, VolumeDefaults{})
	if len(sel.Skipped) != 1 || SkipReason(sel.Skipped[0]) != "podNotRunning" {
		t.Errorf("a pod not running: skipped %+v", sel.Skipped)
	}
	if got := SkipReason(v1.SkippedVolume{Reason: "something new"}); got != "other" {
		t.Errorf("an unknown reason = %q, want other", got)
	}
}

func TestMetricsCountEndedBackupsAndRestores(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	start := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	end := metav1.NewTime(start.Add(90 * time.Second))
	m.backupEnded(&v1.Backup{Status: v1.BackupStatus{Phase: v1.PhasePartiallyFailed, StartTimestamp: &start, CompletionTimestamp: &end,
		VolumesCompleted: 3, VolumesFailed: 1, Resources: []v1.ResourceCount{{Resource: "pods", Count: 4}, {Resource: "secrets", Count: 2}},
		SkippedVolumes: []v1.SkippedVolume{{Reason: "secret volume: x"}, {Reason: "secret volume: y"}, {Reason: "pod is Pending, not Running"}}}})
	m.restoreEnded(&v1.Restore{Status: v1.RestoreStatus{Phase: v1.PhaseCompleted, StartTimestamp: &start, CompletionTimestamp: &end,
		VolumesCompleted: 2, Resources: []v1.ResourceCount{{Resource: "pods", Count: 5}}, SkippedResources: []v1.SkippedResource{{}}}})
	m.scheduleRun("nightly", runSkipped)
	m.synced(syncRemoved)

	for _, c := range []struct {
		name string
		got  prometheus.Collector
		want float64
	}{
		{"backups PartiallyFailed", m.backups.WithLabelValues("PartiallyFailed"), 1},
		{"backups Completed", m.backups.WithLabelValues("Completed"), 0},
		{"backup volumes completed", m.backupVolumes.WithLabelValues(volumeCompleted), 3},
		{"backup volumes failed", m.backupVolumes.WithLabelValues(volumeFailed), 1},
		{"backup resources", m.backupResources, 6},
		{"skipped secret", m.skippedVolumes.WithLabelValues("secret"), 2},
		{"skipped podNotRunning", m.skippedVolumes.WithLabelValues("podNotRunning"), 1},
		{"restores Completed", m.restores.WithLabelValues("Completed"), 1},
		{"restore volumes completed", m.restoreVolumes.WithLabelValues(volumeCompleted), 2},
		{"restore objects created", m.restoreObjects.WithLabelValues(objectsCreated), 5},
		{"restore objects skipped", m.restoreObjects.WithLabelValues(objectsSkipped), 1},
		{"schedule skipped", m.scheduleRuns.WithLabelValues("nightly", runSkipped), 1},
		{"sync removed", m.syncedBackups.WithLabelValues(syncRemoved), 1},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.backupDurations, "straddle_controller_backup_duration_seconds"); n != 1 {
		t.Errorf("%d backup duration series, want 1", n)
	}

	// A second controller in the same process (as in tests) shares the metrics rather than failing.
	again, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second NewMetrics on one registry: %v", err)
	}
	again.synced(syncRemoved)
	if got := testutil.ToFloat64(m.syncedBackups.WithLabelValues(syncRemoved)); got != 2 {
		t.Errorf("shared sync removed = %v, want 2", got)
	}
	var none *Metrics
	none.backupEnded(&v1.Backup{})
	none.restoreEnded(&v1.Restore{})
	none.scheduleRun("s", runCreated)
	none.synced(syncCreated)
}

func TestSkipNoteNamesEveryVolumeOfThePod(t *testing.T) {
	one := skipNote("b1", []v1.SkippedVolume{{Volume: "creds", Reason: "secret volume: x"}})
	if one != "volume creds skipped by backup b1: secret volume: x" {
		t.Errorf("one skip: %q", one)
	}
	two := skipNote("b1", []v1.SkippedVolume{{Volume: "creds", Reason: "secret volume: x"}, {Volume: "host", Reason: "hostPath volume: y"}})
	if two != "volumes creds, host skipped by backup b1: creds: secret volume: x; host: hostPath volume: y" {
		t.Errorf("two skips: %q", two)
	}
	pod := skipNote("b1", []v1.SkippedVolume{{Reason: "pod is Pending, not Running"}})
	if pod != "volumes skipped by backup b1: pod is Pending, not Running" {
		t.Errorf("pod-level skip: %q", pod)
	}
}
