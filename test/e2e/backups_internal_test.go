//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// TestPhaseWatchSeesEarlyCompletion proves the watch that guards "never Completed while a volume runs"
// reports exactly the Backups that are terminal with a PodVolumeBackup still going.
func TestPhaseWatchSeesEarlyCompletion(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	backup := func(name string, phase v1.Phase) client.Object {
		return &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: installNamespace}, Status: v1.BackupStatus{Phase: phase}}
	}
	pvb := func(name, backup string, phase v1.VolumePhase) client.Object {
		return &v1.PodVolumeBackup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: installNamespace, Labels: map[string]string{v1.BackupLabel: backup}},
			Spec:   v1.PodVolumeBackupSpec{Node: nodeA, Pod: v1.PodReference{Namespace: "ns", Name: "pod"}, Volume: name, StorageLocation: "default"},
			Status: v1.PodVolumeBackupStatus{Phase: phase}}
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		backup("early", v1.PhaseCompleted), pvb("early-done", "early", v1.VolumePhaseCompleted), pvb("early-running", "early", v1.VolumePhaseInProgress),
		backup("failed-early", v1.PhasePartiallyFailed), pvb("failed-new", "failed-early", v1.VolumePhaseNew),
		backup("running", v1.PhaseInProgress), pvb("running-vol", "running", v1.VolumePhaseInProgress),
		backup("done", v1.PhaseCompleted), pvb("done-vol", "done", v1.VolumePhaseCompleted), pvb("done-failed", "done", v1.VolumePhaseFailed),
	).Build()
	stored := map[string]bool{"early": true}
	w := &phaseWatch{checked: map[string]bool{}, stored: func(_ context.Context, backup string) error {
		if !stored[backup] {
			return fmt.Errorf("no backups/%s/backup.json", backup)
		}
		return nil
	}}
	w.poll(context.Background(), cl)
	stored["done"] = true // metadata arriving after the Completed phase was seen is still too late
	w.poll(context.Background(), cl)
	if w.polls != 2 || len(w.violations) != 5 {
		t.Fatalf("polls %d, violations %q; want the two early ones twice and done's missing metadata once", w.polls, w.violations)
	}
	all := strings.Join(w.violations, "\n")
	for _, want := range []string{"Backup early was Completed while PodVolumeBackup early-running", "Backup failed-early was PartiallyFailed while PodVolumeBackup failed-new",
		"Backup done was Completed before its metadata was in the bucket: no backups/done/backup.json"} {
		if !strings.Contains(all, want) {
			t.Errorf("violations %q lack %q", w.violations, want)
		}
	}
}
