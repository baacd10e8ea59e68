package controller

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// sb is a schedule's Backup in the given phase that started at start.
func sb(name string, phase v1.Phase, start string) v1.Backup {
	b := v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name}}
	b.Status.Phase = phase
	if start != "" {
		at := metav1.NewTime(utc(start))
		b.Status.StartTimestamp = &at
	}
	return b
}

func TestSelectExpired(t *testing.T) {
	deleting := sb("deleting", v1.PhaseCompleted, "2026-11-20T00:00:00Z")
	deleting.DeletionTimestamp = &metav1.Time{Time: utc("2026-11-25T00:00:00Z")}
	for _, c := range []struct {
		name    string
		policy  v1.RetentionPolicy
		backups []v1.Backup
		want    []string
	}{
		{"keep last 3 of 5", v1.RetentionPolicy{KeepLast: 3}, []v1.Backup{
			sb("a", v1.PhaseCompleted, "2026-11-25T01:00:00Z"), sb("b", v1.PhaseCompleted, "2026-11-25T02:00:00Z"),
			sb("c", v1.PhasePartiallyFailed, "2026-11-25T03:00:00Z"), sb("d", v1.PhaseCompleted, "2026-11-25T04:00:00Z"),
			sb("e", v1.PhaseCompleted, "2026-11-25T05:00:00Z"),
		}, []string{"a", "b"}},
		{"order by start time, not by name or list order", v1.RetentionPolicy{KeepLast: 1}, []v1.Backup{
			sb("z", v1.PhaseCompleted, "2026-11-25T01:00:00Z"), sb("a", v1.PhaseCompleted, "2026-11-25T02:00:00Z"),
		}, []string{"z"}},
		{"running, new and deleting are never touched nor counted", v1.RetentionPolicy{KeepLast: 1}, []v1.Backup{
			sb("old", v1.PhaseCompleted, "2026-11-25T01:00:00Z"), sb("new", v1.PhaseCompleted, "2026-11-25T02:00:00Z"),
			sb("running", v1.PhaseInProgress, "2026-11-25T03:00:00Z"), sb("fresh", "", ""), sb("queued", v1.PhaseNew, ""), deleting,
		}, []string{"old"}},
		{"hourly keeps the newest of each of the last 2 hours", v1.RetentionPolicy{KeepHourly: 2}, []v1.Backup{
			sb("h1a", v1.PhaseCompleted, "2026-11-25T01:10:00Z"), sb("h1b", v1.PhaseCompleted, "2026-11-25T01:50:00Z"),
			sb("h3a", v1.PhaseCompleted, "2026-11-25T03:05:00Z"), sb("h3b", v1.PhaseCompleted, "2026-11-25T03:55:00Z"),
			sb("h0", v1.PhaseCompleted, "2026-11-25T00:30:00Z"),
		}, []string{"h0", "h1a", "h3a"}},
		{"daily and weekly together: kept by any rule", v1.RetentionPolicy{KeepDaily: 2, KeepWeekly: 2}, []v1.Backup{
			// 2026-11-25 is a Wednesday; 11-16..22 is the previous ISO week.
			sb("wed", v1.PhaseCompleted, "2026-11-25T03:00:00Z"), sb("tue", v1.PhaseCompleted, "2026-11-24T03:00:00Z"),
			sb("mon", v1.PhaseCompleted, "2026-11-23T03:00:00Z"), sb("lastsun", v1.PhaseCompleted, "2026-11-22T03:00:00Z"),
			sb("lastsat", v1.PhaseCompleted, "2026-11-21T03:00:00Z"), sb("older", v1.PhaseCompleted, "2026-11-10T03:00:00Z"),
		}, []string{"lastsat", "mon", "older"}},
		{"monthly", v1.RetentionPolicy{KeepMonthly: 2}, []v1.Backup{
			sb("nov2", v1.PhaseCompleted, "2026-11-25T03:00:00Z"), sb("nov1", v1.PhaseCompleted, "2026-11-01T03:00:00Z"),
			sb("oct", v1.PhaseCompleted, "2026-10-31T03:00:00Z"), sb("sep", v1.PhaseCompleted, "2026-09-30T03:00:00Z"),
		}, []string{"nov1", "sep"}},
		{"a failed backup goes once a newer one is kept", v1.RetentionPolicy{KeepLast: 5}, []v1.Backup{
			sb("ok1", v1.PhaseCompleted, "2026-11-25T01:00:00Z"), sb("bad", v1.PhaseFailed, "2026-11-25T02:00:00Z"),
			sb("ok2", v1.PhaseCompleted, "2026-11-25T03:00:00Z"),
		}, []string{"bad"}},
		{"a failed backup newer than every kept one stays", v1.RetentionPolicy{KeepLast: 5}, []v1.Backup{
			sb("ok1", v1.PhaseCompleted, "2026-11-25T01:00:00Z"), sb("bad", v1.PhaseFailed, "2026-11-25T02:00:00Z"),
		}, nil},
		{"only failed backups: all stay", v1.RetentionPolicy{KeepLast: 1}, []v1.Backup{
			sb("bad1", v1.PhaseFailed, "2026-11-25T01:00:00Z"), sb("bad2", v1.PhaseFailed, "2026-11-25T02:00:00Z"),
		}, nil},
		{"a failed backup newer than a dropped one but older than the kept one goes", v1.RetentionPolicy{KeepLast: 1}, []v1.Backup{
			sb("ok1", v1.PhaseCompleted, "2026-11-25T01:00:00Z"), sb("bad", v1.PhaseFailed, "2026-11-25T02:00:00Z"),
			sb("ok2", v1.PhaseCompleted, "2026-11-25T03:00:00Z"),
		}, []string{"bad", "ok1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, ok := retentionPolicy(&c.policy)
			if !ok {
				t.Fatal("policy refused")
			}
			expired, err := selectExpired(p, c.backups)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range expired {
				got = append(got, e.Name)
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("deleted %v, want %v", got, c.want)
			}
		})
	}
}

func TestRetentionPolicyOff(t *testing.T) {
	for _, r := range []*v1.RetentionPolicy{nil, {}} {
		if _, ok := retentionPolicy(r); ok {
			t.Errorf("retentionPolicy(%+v) is on, want off: an empty policy would delete every backup", r)
		}
	}
}
