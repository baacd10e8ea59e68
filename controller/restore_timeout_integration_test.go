//go:build integration

package controller

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// A restore that runs out of time fails its unfinished volume with "timed out after …" and ends
// PartiallyFailed; so does one whose pod never got a node, before the (longer) unbound-pod timeout.
func TestRestoreTimesOut(t *testing.T) {
	e := newEnv(t, nil, nil)
	s := backupSeed(t, e)
	re := startRestores(t, e.ctx, restConfig, e.ns, nil)
	stuck, unbound := randomName("stuck"), randomName("unbound")
	timeout := &metav1.Duration{Duration: 5 * time.Second}

	re.restore("stuck", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: stuck}, Timeout: timeout})
	re.waitResources("stuck")
	re.bind(stuck, "db-0", "node-b")
	var pvrs []v1.PodVolumeRestore
	waitFor(t, "PodVolumeRestore", func() bool { pvrs = re.pvrs("stuck"); return len(pvrs) == 1 })
	// A node-agent took it and never ends it.
	re.setPVR(pvrs[0].Name, v1.VolumePhaseInProgress, v1.Progress{BytesDone: 1, BytesTotal: 10}, "")
	rs := re.waitRestorePhase("stuck", v1.PhasePartiallyFailed)
	if took := rs.Status.CompletionTimestamp.Sub(rs.Status.StartTimestamp.Time); took < 5*time.Second || took > 20*time.Second {
		t.Errorf("the restore ended %s after its start; want just after its 5s timeout", took)
	}
	if rs.Status.VolumesFailed != 1 || !meta.IsStatusConditionTrue(rs.Status.Conditions, ConditionTimedOut) ||
		!slices.ContainsFunc(rs.Status.Errors, func(e string) bool { return strings.Contains(e, "timed out after 5s") }) {
		t.Errorf("timed-out restore: status %+v", rs.Status)
	}
	if got := re.pvrs("stuck"); len(got) != 1 || got[0].Status.Phase != v1.VolumePhaseFailed || got[0].Status.Message != "timed out after 5s" {
		t.Errorf("PodVolumeRestores %+v: want one Failed \"timed out after 5s\"", got)
	}
	waitFor(t, "TimedOut event", func() bool { return slices.Contains(re.eventReasons("Restore", "stuck"), "TimedOut") })

	re.restore("unbound", v1.RestoreSpec{BackupName: s.backup, NamespaceMapping: map[string]string{s.ns: unbound}, Timeout: timeout})
	rs = re.waitRestorePhase("unbound", v1.PhasePartiallyFailed)
	if rs.Status.VolumesFailed != 1 || !slices.ContainsFunc(rs.Status.Errors, func(e string) bool {
		return strings.Contains(e, "volume data of pod "+unbound+"/db-0: timed out after 5s")
	}) {
		t.Errorf("timed-out restore of an unbound pod: status %+v", rs.Status)
	}
}
