package controller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/repo/forget"
)

// retentionPolicy is the schedule's policy in the engine's terms; ok is false when there is none (no
// retention, or every count zero), in which case every Backup is kept until its TTL.
func retentionPolicy(r *v1.RetentionPolicy) (p forget.Policy, ok bool) {
	if r == nil {
		return forget.Policy{}, false
	}
	p = forget.Policy{Last: r.KeepLast, Hourly: r.KeepHourly, Daily: r.KeepDaily, Weekly: r.KeepWeekly, Monthly: r.KeepMonthly}
	return p, p.Validate() == nil
}

// expiredBackup is a Backup retention deletes, and why.
type expiredBackup struct {
	Name   string
	Reason string
}

// backupTime orders a schedule's Backups: when the backup started (as restic orders snapshots by their
// time), else when it was created.
func backupTime(b *v1.Backup) time.Time {
	if b.Status.StartTimestamp != nil {
		return b.Status.StartTimestamp.Time
	}
	return b.CreationTimestamp.Time
}

// selectExpired applies the policy to a schedule's Backups and returns those to delete. Completed and
// PartiallyFailed Backups are counted and kept by the policy's rules; a Failed one is never kept, and goes
// once a newer kept Backup exists (until then it is the only sign of what went wrong). Backups still
// running, already being deleted, or in no phase yet are left alone.
func selectExpired(p forget.Policy, backups []v1.Backup) ([]expiredBackup, error) {
	var counted, failed []*v1.Backup
	for i := range backups {
		b := &backups[i]
		if !b.DeletionTimestamp.IsZero() {
			continue
		}
		switch b.Status.Phase {
		case v1.PhaseCompleted, v1.PhasePartiallyFailed:
			counted = append(counted, b)
		case v1.PhaseFailed:
			failed = append(failed, b)
		}
	}
	slices.SortFunc(counted, func(a, b *v1.Backup) int {
		if c := backupTime(b).Compare(backupTime(a)); c != 0 {
			return c
		}
		// Equal times: by name, so the choice does not depend on the order the Backups were listed in.
		return strings.Compare(b.Name, a.Name)
	})
	times := make([]time.Time, len(counted))
	for i, b := range counted {
		times[i] = backupTime(b)
	}
	reasons, err := p.KeepTimes(times)
	if err != nil {
		return nil, fmt.Errorf("apply retention %s: %w", p, err)
	}
	var out []expiredBackup
	var newestKept time.Time
	for i, b := range counted {
		if len(reasons[i]) > 0 {
			if newestKept.IsZero() {
				newestKept = times[i]
			}
			continue
		}
		out = append(out, expiredBackup{Name: b.Name, Reason: "not kept by " + p.String()})
	}
	for _, b := range failed {
		if !newestKept.IsZero() && newestKept.After(backupTime(b)) {
			out = append(out, expiredBackup{Name: b.Name, Reason: "failed, and a newer backup is kept"})
		}
	}
	slices.SortFunc(out, func(a, b expiredBackup) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
