package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// ConditionReady is True while a Schedule runs; False with reason Paused or InvalidSchedule.
const ConditionReady = "Ready"

// Reasons of a Schedule's Ready condition and Events.
const (
	ReasonRunning         = "Running"
	ReasonPaused          = "Paused"
	ReasonInvalidSchedule = "InvalidSchedule"
)

// ScheduleReconciler creates a Schedule's Backups at its ticks and applies its retention policy.
//
// A tick's Backup is named <schedule>-<tick in UTC>, so creating it is idempotent across restarts and
// replicas. No run starts while one of the schedule's Backups is still running: the tick is recorded as
// skipped. The last tick handled (created or skipped) is the reference for the next: a controller that was
// down for several ticks runs once, for the newest tick missed, then follows the schedule; so does a Schedule
// unpaused after missing ticks. A paused Schedule creates nothing and has no next run time. Deleting a
// Schedule keeps its Backups (no owner reference): each goes at its TTL.
type ScheduleReconciler struct {
	Client client.Client
	// APIReader lists the schedule's Backups at a tick past the cache, which may not yet show the Backup
	// created at the previous tick or its phase.
	APIReader client.Reader
	Clock     clock.PassiveClock
	Events    events.EventRecorder
	// Metrics counts what ends (nil: nothing is counted).
	Metrics *Metrics
	// Namespace is the install namespace: its Schedules are served and their Backups created there.
	Namespace string
}

// SetupWithManager registers the reconciler. A Backup's changes wake its Schedule (by the schedule label),
// which applies retention once the Backup ends.
func (r *ScheduleReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.Schedule{}).
		Watches(&v1.Backup{}, enqueueByLabel(v1.ScheduleLabel, r.Namespace)).
		Named("schedule").Complete(r)
}

// Reconcile applies retention, runs a due tick, and comes back at the next tick.
func (r *ScheduleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.Namespace {
		return ctrl.Result{}, nil
	}
	var s v1.Schedule
	if err := r.Client.Get(ctx, req.NamespacedName, &s); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !s.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	if err := r.applyRetention(ctx, &s); err != nil {
		return ctrl.Result{}, err
	}
	sched, problem := r.parse(&s)
	if problem != "" {
		return r.invalid(ctx, &s, problem)
	}
	if s.Spec.Paused {
		return r.paused(ctx, &s)
	}
	return r.run(ctx, &s, sched)
}

// parse reads the expression; problem is the status message for one the controller cannot run.
func (r *ScheduleReconciler) parse(s *v1.Schedule) (cron.Schedule, string) {
	if len(s.Name) > MaxScheduleNameLength {
		return nil, fmt.Sprintf("schedule name %q is longer than %d characters: its Backups' names add -%s", s.Name, MaxScheduleNameLength, ScheduleTimeFormat)
	}
	sched, err := ParseSchedule(s.Spec.Schedule)
	if err != nil {
		return nil, err.Error()
	}
	return sched, ""
}

// invalid records why the schedule cannot run; it stays so until the spec changes (which wakes it).
func (r *ScheduleReconciler) invalid(ctx context.Context, s *v1.Schedule, problem string) (ctrl.Result, error) {
	announce := s.Status.Message != problem
	before := s.Status.DeepCopy()
	s.Status.Message = problem
	s.Status.NextRunTime = nil
	setReady(s, metav1.ConditionFalse, ReasonInvalidSchedule, problem)
	if equality.Semantic.DeepEqual(before, &s.Status) {
		// Woken by one of its Backups: nothing new to say.
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Update(ctx, s); err != nil {
		return onConflict(err, "record invalid schedule %s", s.Name)
	}
	if announce {
		r.Events.Eventf(s, nil, corev1.EventTypeWarning, ReasonInvalidSchedule, "Schedule", "%s", problem)
	}
	return ctrl.Result{}, nil
}

// paused clears the next run time: nothing will run until the schedule is unpaused (which wakes it).
func (r *ScheduleReconciler) paused(ctx context.Context, s *v1.Schedule) (ctrl.Result, error) {
	before := s.Status.DeepCopy()
	s.Status.Message = "paused: no new backups until unpaused"
	s.Status.NextRunTime = nil
	setReady(s, metav1.ConditionFalse, ReasonPaused, s.Status.Message)
	if equality.Semantic.DeepEqual(before, &s.Status) {
		return ctrl.Result{}, nil
	}
	return onConflict(r.Client.Status().Update(ctx, s), "record schedule %s paused", s.Name)
}

// run handles the newest due tick, if any: it creates that tick's Backup, or records the tick as skipped
// while one of the schedule's Backups runs. Then it comes back at the next tick.
func (r *ScheduleReconciler) run(ctx context.Context, s *v1.Schedule, sched cron.Schedule) (ctrl.Result, error) {
	now := r.Clock.Now().UTC()
	ref := lastHandledTick(s)
	before := s.Status.DeepCopy()
	var announce func()
	if due, ok := latestTick(sched, ref, now); ok {
		var err error
		if announce, err = r.runTick(ctx, s, due); err != nil {
			return ctrl.Result{}, err
		}
		ref = due
	}
	next, err := nextTick(sched, ref)
	if err == nil && !next.After(now) {
		// Missed for longer than the catch-up search reaches: start again from now.
		next, err = nextTick(sched, now)
	}
	if err != nil {
		return r.invalid(ctx, s, fmt.Sprintf("schedule %q: %v", s.Spec.Schedule, err))
	}
	s.Status.NextRunTime = &metav1.Time{Time: next}
	s.Status.Message = ""
	setReady(s, metav1.ConditionTrue, ReasonRunning, "backups are created at each tick")
	if !equality.Semantic.DeepEqual(before, &s.Status) {
		if err := r.Client.Status().Update(ctx, s); err != nil {
			// The tick is not recorded: a conflict means a fresher Schedule, which reconciles again and finds
			// the tick's Backup already there.
			return onConflict(err, "record the run of schedule %s", s.Name)
		}
	}
	// A skip is announced only once the status holds it, so a stale read that loses the update announces nothing.
	if announce != nil {
		announce()
	}
	// Requeued exactly at the next tick; Backup changes wake the schedule in between for retention.
	return ctrl.Result{RequeueAfter: max(next.Sub(now), time.Millisecond)}, nil
}

// runTick creates the tick's Backup unless one of the schedule's Backups is still running, and records the
// outcome in s.Status. The returned function, if any, announces a skip once the status holds it: a skip seen
// through a stale read is never saved (the update conflicts), so it must not be announced either.
func (r *ScheduleReconciler) runTick(ctx context.Context, s *v1.Schedule, tick time.Time) (func(), error) {
	name := ScheduleBackupName(s.Name, tick)
	backups, err := r.backups(ctx, r.APIReader, s)
	if err != nil {
		return nil, err
	}
	at := metav1.NewTime(tick)
	exists := slices.ContainsFunc(backups, func(b v1.Backup) bool { return b.Name == name })
	if running := runningBackup(backups); running != "" && !exists {
		s.Status.SkippedRuns++
		s.Status.LastSkippedTime = &at
		return func() {
			r.Metrics.scheduleRun(s.Name, runSkipped)
			r.Events.Eventf(s, nil, corev1.EventTypeWarning, "Skipped", "Schedule", "skipped the run at %s: backup %s is still running",
				tick.Format(time.RFC3339), running)
		}, nil
	}
	s.Status.LastBackup = name
	s.Status.LastBackupTime = &at
	if exists {
		// Created by this controller before a restart, or by another replica: the run happened.
		return nil, nil
	}
	b := &v1.Backup{
		ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: name, Labels: map[string]string{v1.ScheduleLabel: s.Name}},
		Spec:       *s.Spec.Template.DeepCopy(),
	}
	switch err := r.Client.Create(ctx, b); {
	case apierrors.IsAlreadyExists(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("create backup %s of schedule %s: %w", name, s.Name, err)
	}
	// Only one Create of the name succeeds, so this is announced once even if recording it fails.
	r.Metrics.scheduleRun(s.Name, runCreated)
	r.Events.Eventf(s, b, corev1.EventTypeNormal, "Created", "Schedule", "created backup %s for the run at %s", name, tick.Format(time.RFC3339))
	return nil, nil
}

// applyRetention deletes the schedule's ended Backups its policy does not keep. The Backup's finalizer
// forgets their snapshots and removes their stored objects.
func (r *ScheduleReconciler) applyRetention(ctx context.Context, s *v1.Schedule) error {
	p, ok := retentionPolicy(s.Spec.Retention)
	if !ok {
		return nil
	}
	// The cache may lag: it can only show a Backup as running that ended (kept this time, judged again at
	// its next change) or miss a newer one (fewer deleted), never delete one the policy keeps.
	backups, err := r.backups(ctx, r.Client, s)
	if err != nil {
		return err
	}
	expired, err := selectExpired(p, backups)
	if err != nil {
		return fmt.Errorf("schedule %s: %w", s.Name, err)
	}
	for _, e := range expired {
		b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: s.Namespace, Name: e.Name}}
		if err := r.Client.Delete(ctx, b); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("delete backup %s of schedule %s: %w", e.Name, s.Name, err)
		}
		r.Events.Eventf(s, b, corev1.EventTypeNormal, "Retention", "Delete", "deleting backup %s: %s", e.Name, e.Reason)
	}
	return nil
}

// backups lists the Backups the schedule created. Backups synced from storage are left out even when they
// carry the label: they belong to the cluster that made them, which runs their schedule and retention.
func (r *ScheduleReconciler) backups(ctx context.Context, reader client.Reader, s *v1.Schedule) ([]v1.Backup, error) {
	var list v1.BackupList
	if err := reader.List(ctx, &list, client.InNamespace(s.Namespace), client.MatchingLabels{v1.ScheduleLabel: s.Name}); err != nil {
		return nil, fmt.Errorf("list backups of schedule %s: %w", s.Name, err)
	}
	return slices.DeleteFunc(list.Items, func(b v1.Backup) bool { return b.Annotations[v1.SyncedFromAnnotation] != "" }), nil
}

// runningBackup names one of the Backups that has not ended (no phase yet, New or InProgress), or "".
// A Backup being deleted is not running: its data is on its way out.
func runningBackup(backups []v1.Backup) string {
	for _, b := range backups {
		switch b.Status.Phase {
		case "", v1.PhaseNew, v1.PhaseInProgress:
			if b.DeletionTimestamp.IsZero() {
				return b.Name
			}
		}
	}
	return ""
}

// lastHandledTick is the tick the next one is counted from: the last created or skipped, else the Schedule's
// creation (a new Schedule owes no run for the time before it existed).
func lastHandledTick(s *v1.Schedule) time.Time {
	t := s.CreationTimestamp.Time
	for _, at := range []*metav1.Time{s.Status.LastBackupTime, s.Status.LastSkippedTime} {
		if at != nil && at.After(t) {
			t = at.Time
		}
	}
	return t.UTC()
}

func setReady(s *v1.Schedule, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&s.Status.Conditions, metav1.Condition{Type: ConditionReady, Status: status, Reason: reason, Message: message, ObservedGeneration: s.Generation})
}

// onConflict treats a conflict as "someone else moved it": look again with fresh data, not an error.
func onConflict(err error, format string, args ...any) (ctrl.Result, error) {
	switch {
	case err == nil:
		return ctrl.Result{}, nil
	case apierrors.IsConflict(err):
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	case apierrors.IsNotFound(err):
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, fmt.Errorf(format+": %w", append(args, err)...)
}
