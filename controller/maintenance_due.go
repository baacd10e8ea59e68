package controller

import (
	"time"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// Defaults of a BackupRepository's maintenance when its spec leaves them unset (the CRD defaults them too;
// these cover objects written before those fields existed).
const (
	DefaultMaintenanceFrequency = 24 * time.Hour
	DefaultCheckFrequency       = 7 * 24 * time.Hour
	DefaultCheckReadDataPercent = 10
)

// Defaults of MaintenanceReconciler's tunables.
const (
	// DefaultMaintenanceRetryDelay is how soon a failed or postponed run is requested again: backups that held
	// the repository are usually done within minutes, and waiting a whole frequency would let garbage pile up.
	DefaultMaintenanceRetryDelay = 5 * time.Minute
	// DefaultMaintenanceStaleAfter is how long a claimed run may go without a heartbeat before it counts as
	// abandoned (its node-agent died) and is requested again: four missed heartbeats of 30 s.
	DefaultMaintenanceStaleAfter = 2 * time.Minute
)

// PruneFrequency is how often br is pruned.
func PruneFrequency(br *v1.BackupRepository) time.Duration {
	if f := br.Spec.MaintenanceFrequency; f != nil && f.Duration > 0 {
		return f.Duration
	}
	return DefaultMaintenanceFrequency
}

// CheckFrequency is how often br is checked.
func CheckFrequency(br *v1.BackupRepository) time.Duration {
	if f := br.Spec.CheckFrequency; f != nil && f.Duration > 0 {
		return f.Duration
	}
	return DefaultCheckFrequency
}

// CheckReadDataPercent is the share of packs a check of br reads, in percent.
func CheckReadDataPercent(br *v1.BackupRepository) int32 {
	if p := br.Spec.CheckReadDataPercent; p != nil && *p >= 1 && *p <= 100 {
		return *p
	}
	return DefaultCheckReadDataPercent
}

// nextPrune is when br's next prune is due: a frequency after the last successful prune (or the repository's
// creation), or a retry delay (at most a frequency) after a failed or postponed one.
func nextPrune(br *v1.BackupRepository, retry time.Duration) time.Time {
	freq := PruneFrequency(br)
	base := br.CreationTimestamp.Time
	if t := br.Status.LastMaintenanceTime; t != nil {
		base = t.Time
	}
	next := base.Add(freq)
	if lp := br.Status.LastPrune; lp != nil && lp.Error != "" && lp.Time.After(base) {
		next = lp.Time.Add(min(retry, freq))
	}
	return next
}

// nextCheck is when br's next check is due: a frequency after the last check that ran to its end (whatever it
// found) or the repository's creation, or a retry delay (at most a frequency) after one that could not run.
func nextCheck(br *v1.BackupRepository, retry time.Duration) time.Time {
	freq := CheckFrequency(br)
	lc := br.Status.LastCheck
	switch {
	case lc == nil:
		return br.CreationTimestamp.Add(freq)
	case lc.Error != "":
		return lc.Time.Add(min(retry, freq))
	default:
		return lc.Time.Add(freq)
	}
}

// maintenanceDecision is what the controller does about one BackupRepository now.
type maintenanceDecision struct {
	// Request, when set, is the kind of run to request (anew, when a claim went stale).
	Request v1.MaintenanceKind
	// Stale says the request replaces a claim whose node-agent stopped heartbeating.
	Stale bool
	// After is when to look again; 0 means only when the object changes.
	After time.Duration
}

// decideMaintenance decides whether br needs a run requested at now. One run at a time: while a request is
// outstanding nothing else is requested; a claimed run is watched for its heartbeat. Prune goes before check
// when both are due, so a check verifies what prune left.
func decideMaintenance(br *v1.BackupRepository, now time.Time, retry, staleAfter time.Duration) maintenanceDecision {
	if m := br.Status.Maintenance; m != nil {
		if m.Node == "" {
			// Unclaimed: a node-agent's claim changes the object and brings it back here.
			return maintenanceDecision{}
		}
		beat := m.RequestedTime.Time
		if m.StartTime != nil {
			beat = m.StartTime.Time
		}
		if m.HeartbeatTime != nil && m.HeartbeatTime.After(beat) {
			beat = m.HeartbeatTime.Time
		}
		stale := beat.Add(staleAfter)
		if !now.Before(stale) {
			return maintenanceDecision{Request: m.Kind, Stale: true}
		}
		// Heartbeats change the object too, but a dead agent sends none: look again when it would be stale.
		return maintenanceDecision{After: stale.Sub(now)}
	}
	p, c := nextPrune(br, retry), nextCheck(br, retry)
	switch {
	case !now.Before(p):
		return maintenanceDecision{Request: v1.MaintenancePrune}
	case !now.Before(c):
		return maintenanceDecision{Request: v1.MaintenanceCheck}
	}
	// Nothing due: come back exactly when the first run is.
	first := p
	if c.Before(p) {
		first = c
	}
	return maintenanceDecision{After: first.Sub(now)}
}
