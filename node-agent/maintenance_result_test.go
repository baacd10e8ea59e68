package nodeagent

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/prune"
)

func TestClaimable(t *testing.T) {
	for _, c := range []struct {
		name    string
		m       *v1.MaintenanceRun
		handled map[string]bool
		want    bool
	}{
		{"no request", nil, nil, false},
		{"unclaimed request", &v1.MaintenanceRun{ID: "r1", Kind: v1.MaintenancePrune}, nil, true},
		{"claimed by another node", &v1.MaintenanceRun{ID: "r1", Kind: v1.MaintenancePrune, Node: "b"}, nil, false},
		{"claimed by this node before a restart", &v1.MaintenanceRun{ID: "r1", Kind: v1.MaintenanceCheck, Node: "a"}, nil, true},
		{"claimed by this process (a lagging cache)", &v1.MaintenanceRun{ID: "r1", Kind: v1.MaintenancePrune, Node: "a"}, map[string]bool{"r1": true}, false},
		{"unclaimed but already run here", &v1.MaintenanceRun{ID: "r1", Kind: v1.MaintenancePrune}, map[string]bool{"r1": true}, false},
		{"a new request after one run here", &v1.MaintenanceRun{ID: "r2", Kind: v1.MaintenancePrune}, map[string]bool{"r1": true}, true},
		{"unknown kind", &v1.MaintenanceRun{ID: "r1", Kind: "Defrag"}, nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := claimable(c.m, "a", c.handled); got != c.want {
				t.Errorf("claimable = %v, want %v", got, c.want)
			}
		})
	}
}

func TestApplyPrune(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(3 * time.Second)
	prev := metav1.NewTime(start.Add(-24 * time.Hour))

	t.Run("success", func(t *testing.T) {
		st := v1.BackupRepositoryStatus{LastMaintenanceTime: &prev}
		pr := pruneResult(&prune.Result{BytesFreed: 1234, PacksDeleted: 3, PacksRepacked: 1, Snapshots: 2}, nil, "a", start, end)
		applyPrune(&st, pr)
		if !st.LastMaintenanceTime.Time.Equal(end) {
			t.Errorf("lastMaintenanceTime %v, want %v", st.LastMaintenanceTime, end)
		}
		lp := st.LastPrune
		if lp.BytesFreed != 1234 || lp.PacksDeleted != 3 || lp.PacksRepacked != 1 || lp.Snapshots != 2 || lp.Error != "" || lp.Node != "a" || lp.Duration.Duration != 3*time.Second {
			t.Errorf("lastPrune %+v", lp)
		}
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionPruned); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("Pruned condition %+v", c)
		}
	})
	t.Run("postponed", func(t *testing.T) {
		st := v1.BackupRepositoryStatus{LastMaintenanceTime: &prev}
		err := fmt.Errorf("prune deleted nothing: %w", &lock.LockedError{Kind: lock.Exclusive, Purpose: lock.PurposePrune})
		applyPrune(&st, pruneResult(&prune.Result{BytesFreed: 99, PacksDeleted: 2, Snapshots: 2}, err, "a", start, end))
		if !st.LastMaintenanceTime.Equal(&prev) {
			t.Errorf("a postponed prune moved lastMaintenanceTime to %v", st.LastMaintenanceTime)
		}
		lp := st.LastPrune
		if !lp.Postponed || !strings.HasPrefix(lp.Error, "postponed: backups held the repository") || lp.BytesFreed != 0 || lp.PacksDeleted != 0 {
			t.Errorf("lastPrune %+v, want postponed with nothing freed", lp)
		}
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionPruned); c == nil || c.Status != metav1.ConditionFalse || c.Reason != "Postponed" {
			t.Errorf("Pruned condition %+v", c)
		}
	})
	t.Run("failed", func(t *testing.T) {
		st := v1.BackupRepositoryStatus{}
		applyPrune(&st, pruneResult(nil, errors.New("open the repository: no such bucket"), "a", start, end))
		if st.LastMaintenanceTime != nil || st.LastPrune.Postponed || st.LastPrune.Error != "open the repository: no such bucket" {
			t.Errorf("status %+v, lastPrune %+v", st, st.LastPrune)
		}
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionPruned); c == nil || c.Reason != "Failed" {
			t.Errorf("Pruned condition %+v", c)
		}
	})
}

func TestApplyCheck(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(time.Second)
	t.Run("ok", func(t *testing.T) {
		st := v1.BackupRepositoryStatus{}
		applyCheck(&st, checkResult(&check.Result{PacksRead: 4, BytesRead: 4096}, nil, 10, "b", start, end))
		lc := st.LastCheck
		if !lc.OK || lc.PacksRead != 4 || lc.BytesRead != 4096 || lc.ReadDataPercent != 10 || lc.ErrorCount != 0 || lc.Node != "b" {
			t.Errorf("lastCheck %+v", lc)
		}
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionChecked); c == nil || c.Status != metav1.ConditionTrue {
			t.Errorf("Checked condition %+v", c)
		}
	})
	t.Run("errors found, trimmed", func(t *testing.T) {
		res := &check.Result{}
		for i := range 12 {
			res.Errors = append(res.Errors, check.Problem{Object: fmt.Sprintf("data/%02d", i), Message: strings.Repeat("x", 1000)})
		}
		st := v1.BackupRepositoryStatus{}
		applyCheck(&st, checkResult(res, nil, 10, "b", start, end))
		lc := st.LastCheck
		if lc.OK || lc.ErrorCount != 12 || len(lc.Errors) != maxCheckErrors || !strings.HasPrefix(lc.Errors[0], "data/00: ") {
			t.Errorf("lastCheck ok=%v count=%d errors=%d first=%.20q", lc.OK, lc.ErrorCount, len(lc.Errors), lc.Errors[0])
		}
		for _, e := range lc.Errors {
			if len(e) > maxCheckErrorLen+len("…") {
				t.Errorf("error of %d bytes kept", len(e))
			}
		}
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionChecked); c == nil || c.Reason != "ErrorsFound" {
			t.Errorf("Checked condition %+v", c)
		}
	})
	t.Run("could not run", func(t *testing.T) {
		st := v1.BackupRepositoryStatus{}
		applyCheck(&st, checkResult(nil, errors.New("storage unreachable"), 10, "b", start, end))
		if st.LastCheck.OK || st.LastCheck.Error != "storage unreachable" {
			t.Errorf("lastCheck %+v", st.LastCheck)
		}
		if c := meta.FindStatusCondition(st.Conditions, v1.ConditionChecked); c == nil || c.Reason != "Failed" {
			t.Errorf("Checked condition %+v", c)
		}
	})
}
