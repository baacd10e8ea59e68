package nodeagent

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/prune"
)

// How much of a check's findings the status keeps: the first few, each short, so a damaged repository with
// thousands of problems does not push the object past the API server's size limit.
const (
	maxCheckErrors   = 5
	maxCheckErrorLen = 300
)

// postponedPrefix starts a postponed prune's error; the controller requests the prune again soon.
const postponedPrefix = "postponed: backups held the repository"

// claimable says whether an agent of node should take m: a request nobody claimed, or one its own node
// claimed before the agent restarted. handled holds the requests this process took, so a cache that lags
// behind the agent's own writes never makes it run one twice.
func claimable(m *v1.MaintenanceRun, node string, handled map[string]bool) bool {
	if m == nil || handled[m.ID] || (m.Kind != v1.MaintenancePrune && m.Kind != v1.MaintenanceCheck) {
		return false
	}
	return m.Node == "" || m.Node == node
}

// pruneResult turns what prune.Run returned into the status's record of it.
func pruneResult(res *prune.Result, err error, node string, start, end time.Time) v1.PruneResult {
	pr := v1.PruneResult{Time: metav1.NewTime(end), Node: node, Duration: &metav1.Duration{Duration: end.Sub(start).Round(time.Millisecond)}}
	if res != nil {
		pr.BytesFreed, pr.PacksDeleted, pr.PacksRepacked, pr.Snapshots = res.BytesFreed, int64(res.PacksDeleted), int64(res.PacksRepacked), int64(res.Snapshots)
	}
	switch {
	case errors.Is(err, lock.ErrLocked):
		pr.Postponed, pr.Error = true, fmt.Sprintf("%s: %v", postponedPrefix, err)
		// Nothing was deleted, whatever planning found.
		pr.BytesFreed, pr.PacksDeleted = 0, 0
	case err != nil:
		pr.Error = err.Error()
	}
	return pr
}

// checkResult turns what check.Run returned into the status's record of it.
func checkResult(res *check.Result, err error, percent int32, node string, start, end time.Time) v1.CheckResult {
	cr := v1.CheckResult{Time: metav1.NewTime(end), Node: node, Duration: &metav1.Duration{Duration: end.Sub(start).Round(time.Millisecond)}, ReadDataPercent: percent}
	if err != nil {
		cr.Error = err.Error()
		return cr
	}
	cr.OK = res.OK()
	cr.ErrorCount, cr.PacksRead, cr.BytesRead = int64(len(res.Errors)), int64(res.PacksRead), res.BytesRead
	for _, p := range res.Errors[:min(len(res.Errors), maxCheckErrors)] {
		s := p.String()
		if len(s) > maxCheckErrorLen {
			s = s[:maxCheckErrorLen] + "…"
		}
		cr.Errors = append(cr.Errors, s)
	}
	return cr
}

// applyPrune records pr in st: lastPrune always, lastMaintenanceTime only for a success (it is what the next
// prune is counted from), and the Pruned condition.
func applyPrune(st *v1.BackupRepositoryStatus, pr v1.PruneResult) {
	st.LastPrune = &pr
	c := metav1.Condition{Type: v1.ConditionPruned, LastTransitionTime: pr.Time}
	switch {
	case pr.Postponed:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "Postponed", pr.Error
	case pr.Error != "":
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "Failed", pr.Error
	default:
		st.LastMaintenanceTime = &pr.Time
		c.Status, c.Reason = metav1.ConditionTrue, "Succeeded"
		c.Message = fmt.Sprintf("freed %d bytes: deleted %d packs (%d repacked); %d snapshots remain", pr.BytesFreed, pr.PacksDeleted, pr.PacksRepacked, pr.Snapshots)
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

// applyCheck records cr in st: lastCheck and the Checked condition.
func applyCheck(st *v1.BackupRepositoryStatus, cr v1.CheckResult) {
	st.LastCheck = &cr
	c := metav1.Condition{Type: v1.ConditionChecked, LastTransitionTime: cr.Time}
	switch {
	case cr.Error != "":
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "Failed", cr.Error
	case !cr.OK:
		c.Status, c.Reason = metav1.ConditionFalse, "ErrorsFound"
		c.Message = fmt.Sprintf("%d errors, first: %s", cr.ErrorCount, cr.Errors[0])
	default:
		c.Status, c.Reason = metav1.ConditionTrue, "NoErrors"
		c.Message = fmt.Sprintf("no errors; read %d packs (%d bytes, %d%% of the packs)", cr.PacksRead, cr.BytesRead, cr.ReadDataPercent)
	}
	meta.SetStatusCondition(&st.Conditions, c)
}
