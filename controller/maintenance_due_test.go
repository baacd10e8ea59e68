package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func TestDecideMaintenance(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { return ptr.To(metav1.NewTime(created.Add(d))) }
	const retry, stale = 5 * time.Minute, 2 * time.Minute
	day, week := 24*time.Hour, 7*24*time.Hour
	repo := func(mut func(*v1.BackupRepository)) *v1.BackupRepository {
		br := &v1.BackupRepository{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}}
		if mut != nil {
			mut(br)
		}
		return br
	}
	for _, c := range []struct {
		name string
		br   *v1.BackupRepository
		now  time.Duration // after creation
		want maintenanceDecision
	}{
		{"new repository waits a frequency from its creation", repo(nil), time.Hour, maintenanceDecision{After: 23 * time.Hour}},
		{"prune due a day after creation", repo(nil), day, maintenanceDecision{Request: v1.MaintenancePrune}},
		{"custom frequency", repo(func(br *v1.BackupRepository) {
			br.Spec.MaintenanceFrequency = &metav1.Duration{Duration: 5 * time.Second}
		}), 5 * time.Second, maintenanceDecision{Request: v1.MaintenancePrune}},
		{"next prune a frequency after the last success", repo(func(br *v1.BackupRepository) {
			br.Status.LastMaintenanceTime = at(day + time.Hour)
			br.Status.LastPrune = &v1.PruneResult{Time: *at(day + time.Hour)}
			br.Status.LastCheck = &v1.CheckResult{Time: *at(day + time.Hour), OK: true}
		}), day + 2*time.Hour, maintenanceDecision{After: 23 * time.Hour}},
		{"postponed prune retried after the retry delay, not a day", repo(func(br *v1.BackupRepository) {
			br.Status.LastPrune = &v1.PruneResult{Time: *at(day), Postponed: true, Error: "postponed"}
		}), day + time.Minute, maintenanceDecision{After: 4 * time.Minute}},
		{"postponed prune due after the retry delay", repo(func(br *v1.BackupRepository) {
			br.Status.LastPrune = &v1.PruneResult{Time: *at(day), Postponed: true, Error: "postponed"}
		}), day + retry, maintenanceDecision{Request: v1.MaintenancePrune}},
		{"retry never later than the frequency", repo(func(br *v1.BackupRepository) {
			br.Spec.MaintenanceFrequency = &metav1.Duration{Duration: 5 * time.Second}
			br.Status.LastPrune = &v1.PruneResult{Time: *at(time.Minute), Error: "storage down"}
		}), time.Minute + 5*time.Second, maintenanceDecision{Request: v1.MaintenancePrune}},
		{"an old failure before the last success does not matter", repo(func(br *v1.BackupRepository) {
			br.Status.LastMaintenanceTime = at(2 * day)
			br.Status.LastPrune = &v1.PruneResult{Time: *at(day), Error: "old"}
			br.Status.LastCheck = &v1.CheckResult{Time: *at(2 * day), OK: true}
		}), 2*day + time.Hour, maintenanceDecision{After: 23 * time.Hour}},
		{"check due a week after creation, after prune", repo(func(br *v1.BackupRepository) {
			br.Status.LastMaintenanceTime = at(week - time.Hour)
		}), week, maintenanceDecision{Request: v1.MaintenanceCheck}},
		{"prune first when both are due", repo(nil), week, maintenanceDecision{Request: v1.MaintenancePrune}},
		{"a check that found errors ran: next one a frequency later", repo(func(br *v1.BackupRepository) {
			br.Status.LastMaintenanceTime = at(week)
			br.Status.LastCheck = &v1.CheckResult{Time: *at(week), ErrorCount: 3}
		}), week + time.Hour, maintenanceDecision{After: 23 * time.Hour}},
		{"a check that could not run is retried soon", repo(func(br *v1.BackupRepository) {
			br.Status.LastMaintenanceTime = at(week)
			br.Status.LastCheck = &v1.CheckResult{Time: *at(week), Error: "storage down"}
		}), week + time.Minute, maintenanceDecision{After: 4 * time.Minute}},
		{"requeue at the earlier of prune and check", repo(func(br *v1.BackupRepository) {
			br.Spec.MaintenanceFrequency = &metav1.Duration{Duration: time.Hour}
			br.Spec.CheckFrequency = &metav1.Duration{Duration: 10 * time.Minute}
		}), time.Minute, maintenanceDecision{After: 9 * time.Minute}},
		{"an unclaimed request waits for a claim", repo(func(br *v1.BackupRepository) {
			br.Status.Maintenance = &v1.MaintenanceRun{Kind: v1.MaintenancePrune, RequestedTime: *at(day)}
		}), 3 * day, maintenanceDecision{}},
		{"a claimed run with a fresh heartbeat is watched", repo(func(br *v1.BackupRepository) {
			br.Status.Maintenance = &v1.MaintenanceRun{Kind: v1.MaintenancePrune, RequestedTime: *at(day), Node: "a", StartTime: at(day), HeartbeatTime: at(day + time.Hour)}
		}), day + time.Hour + 30*time.Second, maintenanceDecision{After: 90 * time.Second}},
		{"a claimed run without heartbeat is requested again", repo(func(br *v1.BackupRepository) {
			br.Status.Maintenance = &v1.MaintenanceRun{Kind: v1.MaintenanceCheck, RequestedTime: *at(day), Node: "a", StartTime: at(day), HeartbeatTime: at(day + time.Hour)}
		}), day + time.Hour + stale, maintenanceDecision{Request: v1.MaintenanceCheck, Stale: true}},
		{"a claim that never heartbeat goes stale from its start", repo(func(br *v1.BackupRepository) {
			br.Status.Maintenance = &v1.MaintenanceRun{Kind: v1.MaintenancePrune, RequestedTime: *at(day), Node: "a", StartTime: at(day)}
		}), day + stale, maintenanceDecision{Request: v1.MaintenancePrune, Stale: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := decideMaintenance(c.br, created.Add(c.now), retry, stale)
			if got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestMaintenanceDefaults(t *testing.T) {
	br := &v1.BackupRepository{}
	if PruneFrequency(br) != 24*time.Hour || CheckFrequency(br) != 168*time.Hour || CheckReadDataPercent(br) != 10 {
		t.Errorf("defaults %v %v %v", PruneFrequency(br), CheckFrequency(br), CheckReadDataPercent(br))
	}
	br.Spec.CheckReadDataPercent = ptr.To[int32](100)
	if CheckReadDataPercent(br) != 100 {
		t.Errorf("percent %d, want 100", CheckReadDataPercent(br))
	}
}
