//go:build integration

package controller

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// scheduleEnv runs only the Schedule reconciler, on a fake clock: the test plays the Backup reconciler by
// setting its Backups' phases, and drives time by stepping the clock and touching the Schedule (the
// reconciler's own requeue waits in real time).
type scheduleEnv struct {
	t     *testing.T
	ctx   context.Context
	cl    client.Client
	ns    string
	clock *clocktesting.FakeClock
	pokes int
}

// hourAfter is the first whole hour after t, a tick of "0 * * * *".
func hourAfter(t time.Time) time.Time { return t.UTC().Truncate(time.Hour).Add(time.Hour) }

func newScheduleEnv(t *testing.T) *scheduleEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cl, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &scheduleEnv{t: t, ctx: ctx, cl: cl, ns: randomName("straddle"), clock: clocktesting.NewFakeClock(time.Now().UTC())}
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}); err != nil {
		t.Fatal(err)
	}
	inInstall := cache.ByObject{Namespaces: map[string]cache.Config{e.ns: {}}}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:                  cache.Options{ByObject: map[client.Object]cache.ByObject{&v1.Backup{}: inInstall, &v1.Schedule{}: inInstall}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &ScheduleReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Clock: e.clock,
		Events: mgr.GetEventRecorder("straddle-controller"), Namespace: e.ns}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			stop()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
		})
	})
	return e
}

func (e *scheduleEnv) schedule(name, expr string, mutate func(*v1.Schedule)) {
	e.t.Helper()
	s := &v1.Schedule{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}, Spec: v1.ScheduleSpec{Schedule: expr,
		Template: v1.BackupSpec{IncludedNamespaces: []string{"app"}, TTL: &metav1.Duration{Duration: 48 * time.Hour}}}}
	if mutate != nil {
		mutate(s)
	}
	if err := e.cl.Create(e.ctx, s); err != nil {
		e.t.Fatalf("create schedule %s: %v", name, err)
	}
}

func (e *scheduleEnv) get(name string) *v1.Schedule {
	e.t.Helper()
	var s v1.Schedule
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &s); err != nil {
		e.t.Fatalf("get schedule %s: %v", name, err)
	}
	return &s
}

// update changes the Schedule's spec or metadata, retrying on conflicts with the reconciler's status writes.
func (e *scheduleEnv) update(name string, mutate func(*v1.Schedule)) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := e.get(name)
		mutate(s)
		return e.cl.Update(e.ctx, s)
	})
	if err != nil {
		e.t.Fatalf("update schedule %s: %v", name, err)
	}
}

// at sets the clock and wakes the schedule, as its requeue would at that time.
func (e *scheduleEnv) at(name string, t time.Time) {
	e.t.Helper()
	e.clock.SetTime(t)
	e.pokes++
	e.update(name, func(s *v1.Schedule) { metav1.SetMetaDataAnnotation(&s.ObjectMeta, "test/poke", strconv.Itoa(e.pokes)) })
}

// backups lists the schedule's Backups by name.
func (e *scheduleEnv) backups(schedule string) []string {
	e.t.Helper()
	var list v1.BackupList
	if err := e.cl.List(e.ctx, &list, client.InNamespace(e.ns), client.MatchingLabels{v1.ScheduleLabel: schedule}); err != nil {
		e.t.Fatal(err)
	}
	var names []string
	for _, b := range list.Items {
		names = append(names, b.Name)
	}
	slices.Sort(names)
	return names
}

// setPhase plays the Backup reconciler: it records the Backup's phase and start time.
func (e *scheduleEnv) setPhase(name string, phase v1.Phase, start time.Time) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var b v1.Backup
		if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &b); err != nil {
			return err
		}
		b.Status.Phase = phase
		b.Status.StartTimestamp = &metav1.Time{Time: start}
		return e.cl.Status().Update(e.ctx, &b)
	})
	if err != nil {
		e.t.Fatalf("set phase of backup %s: %v", name, err)
	}
}

func (e *scheduleEnv) waitSchedule(name, what string, ok func(*v1.Schedule) bool) *v1.Schedule {
	e.t.Helper()
	var s *v1.Schedule
	waitFor(e.t, "schedule "+name+" "+what, func() bool {
		s = e.get(name)
		return ok(s)
	})
	return s
}

func (e *scheduleEnv) waitBackups(schedule string, want ...string) {
	e.t.Helper()
	slices.Sort(want)
	var got []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if got = e.backups(schedule); slices.Equal(got, want) {
			return
		}
	}
	e.t.Fatalf("backups of schedule %s: %v, want %v", schedule, got, want)
}

func (e *scheduleEnv) eventReasons(name string) []string {
	e.t.Helper()
	var list corev1.EventList
	if err := e.cl.List(e.ctx, &list, client.InNamespace(e.ns)); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.InvolvedObject.Name == name && ev.InvolvedObject.Kind == "Schedule" {
			out = append(out, ev.Reason)
		}
	}
	return out
}

func timeIs(t *metav1.Time, want time.Time) bool { return t != nil && t.Time.Equal(want) }

// TestScheduleRunsAtTicks follows one schedule through runs, a skipped tick, a jump of several periods and a
// pause.
func TestScheduleRunsAtTicks(t *testing.T) {
	e := newScheduleEnv(t)
	e.schedule("hourly", "0 * * * *", nil)
	h1 := hourAfter(e.clock.Now())
	s := e.waitSchedule("hourly", "shows its next run", func(s *v1.Schedule) bool { return timeIs(s.Status.NextRunTime, h1) })
	if !meta.IsStatusConditionTrue(s.Status.Conditions, ConditionReady) {
		t.Errorf("conditions %+v, want Ready", s.Status.Conditions)
	}
	if got := e.backups("hourly"); len(got) != 0 {
		t.Fatalf("backups before the first tick: %v", got)
	}

	// The first tick creates the Backup from the template, labelled, without an owner.
	e.at("hourly", h1.Add(2*time.Second))
	first := ScheduleBackupName("hourly", h1)
	e.waitBackups("hourly", first)
	var b v1.Backup
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: first}, &b); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Spec.IncludedNamespaces, []string{"app"}) || b.Spec.TTL == nil || b.Spec.TTL.Duration != 48*time.Hour || len(b.OwnerReferences) != 0 {
		t.Errorf("backup spec %+v, owners %v: want the template's, no owner", b.Spec, b.OwnerReferences)
	}
	e.waitSchedule("hourly", "records the run", func(s *v1.Schedule) bool {
		return s.Status.LastBackup == first && timeIs(s.Status.LastBackupTime, h1) && timeIs(s.Status.NextRunTime, h1.Add(time.Hour))
	})

	// The next tick finds it still running: skipped, and recorded.
	h2 := h1.Add(time.Hour)
	e.at("hourly", h2.Add(time.Second))
	s = e.waitSchedule("hourly", "records the skipped tick", func(s *v1.Schedule) bool { return s.Status.SkippedRuns == 1 })
	if !timeIs(s.Status.LastSkippedTime, h2) || s.Status.LastBackup != first || !timeIs(s.Status.NextRunTime, h2.Add(time.Hour)) {
		t.Errorf("status after the skip: %+v", s.Status)
	}
	e.waitBackups("hourly", first)
	waitFor(t, "a Skipped event", func() bool { return slices.Contains(e.eventReasons("hourly"), "Skipped") })

	// Once it ended, the next tick runs.
	e.setPhase(first, v1.PhaseCompleted, h1)
	h3 := h2.Add(time.Hour)
	e.at("hourly", h3)
	third := ScheduleBackupName("hourly", h3)
	e.waitBackups("hourly", first, third)
	e.setPhase(third, v1.PhasePartiallyFailed, h3)

	// Down for four ticks: one run, for the newest, then the schedule as before.
	h7 := h3.Add(4 * time.Hour)
	e.at("hourly", h7.Add(30*time.Minute))
	seventh := ScheduleBackupName("hourly", h7)
	e.waitBackups("hourly", first, third, seventh)
	s = e.waitSchedule("hourly", "records the catch-up", func(s *v1.Schedule) bool { return s.Status.LastBackup == seventh })
	if !timeIs(s.Status.NextRunTime, h7.Add(time.Hour)) || s.Status.SkippedRuns != 1 {
		t.Errorf("status after the catch-up: next run %v, skipped %d; want %s and 1", s.Status.NextRunTime, s.Status.SkippedRuns, h7.Add(time.Hour))
	}
	// Touching it again at the same time runs nothing more.
	e.at("hourly", h7.Add(31*time.Minute))
	time.Sleep(300 * time.Millisecond)
	e.waitBackups("hourly", first, third, seventh)
	e.setPhase(seventh, v1.PhaseCompleted, h7)

	// Paused: no next run, no backups at later ticks.
	e.update("hourly", func(s *v1.Schedule) { s.Spec.Paused = true })
	s = e.waitSchedule("hourly", "shows it is paused", func(s *v1.Schedule) bool { return s.Status.NextRunTime == nil })
	if c := meta.FindStatusCondition(s.Status.Conditions, ConditionReady); c == nil || c.Reason != ReasonPaused || s.Status.Message == "" {
		t.Errorf("paused status: %+v", s.Status)
	}
	h9 := h7.Add(2 * time.Hour)
	e.at("hourly", h9.Add(time.Second))
	time.Sleep(300 * time.Millisecond)
	e.waitBackups("hourly", first, third, seventh)

	// Unpaused: the missed tick is caught up, once.
	e.update("hourly", func(s *v1.Schedule) { s.Spec.Paused = false })
	e.waitBackups("hourly", first, third, seventh, ScheduleBackupName("hourly", h9))
	e.waitSchedule("hourly", "runs again", func(s *v1.Schedule) bool { return timeIs(s.Status.NextRunTime, h9.Add(time.Hour)) })
	waitFor(t, "Created events", func() bool { return slices.Contains(e.eventReasons("hourly"), "Created") })

	// Deleting the schedule keeps its backups.
	if err := e.cl.Delete(e.ctx, e.get("hourly")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	e.waitBackups("hourly", first, third, seventh, ScheduleBackupName("hourly", h9))
}

// TestScheduleIdempotentRun shows a tick whose Backup already exists (a restart between creating it and
// recording it, or a second replica) counts as the run, not as a skip.
func TestScheduleIdempotentRun(t *testing.T) {
	e := newScheduleEnv(t)
	h1 := hourAfter(e.clock.Now())
	name := ScheduleBackupName("again", h1)
	if err := e.cl.Create(e.ctx, &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name, Labels: map[string]string{v1.ScheduleLabel: "again"}}}); err != nil {
		t.Fatal(err)
	}
	e.schedule("again", "0 * * * *", nil)
	e.at("again", h1.Add(time.Second))
	s := e.waitSchedule("again", "records the run", func(s *v1.Schedule) bool { return s.Status.LastBackup == name })
	if s.Status.SkippedRuns != 0 {
		t.Errorf("skipped runs %d, want 0", s.Status.SkippedRuns)
	}
	e.waitBackups("again", name)
}

func TestScheduleInvalidExpression(t *testing.T) {
	e := newScheduleEnv(t)
	for name, expr := range map[string]string{"bad-minute": "61 * * * *", "never": "0 0 30 2 *"} {
		e.schedule(name, expr, nil)
		s := e.waitSchedule(name, "says it is invalid", func(s *v1.Schedule) bool { return s.Status.Message != "" })
		if c := meta.FindStatusCondition(s.Status.Conditions, ConditionReady); c == nil || c.Reason != ReasonInvalidSchedule || s.Status.NextRunTime != nil {
			t.Errorf("%s: status %+v", name, s.Status)
		}
		waitFor(t, name+": an InvalidSchedule event", func() bool { return slices.Contains(e.eventReasons(name), ReasonInvalidSchedule) })
	}
	// The API server refuses negative counts.
	neg := &v1.Schedule{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "negative"}, Spec: v1.ScheduleSpec{Schedule: "@daily", Retention: &v1.RetentionPolicy{KeepDaily: -1}}}
	if err := e.cl.Create(e.ctx, neg); err == nil || !strings.Contains(err.Error(), "keepDaily") {
		t.Errorf("keepDaily -1: %v, want refused", err)
	}
	// Fixed, it runs.
	e.update("bad-minute", func(s *v1.Schedule) { s.Spec.Schedule = "0 * * * *" })
	e.waitSchedule("bad-minute", "runs once fixed", func(s *v1.Schedule) bool { return s.Status.Message == "" && s.Status.NextRunTime != nil })
}

// TestScheduleRetention keeps the two newest ended Backups, never touches a running one, and deletes a
// Failed one once a newer one is kept.
func TestScheduleRetention(t *testing.T) {
	e := newScheduleEnv(t)
	e.schedule("kept", "0 * * * *", func(s *v1.Schedule) { s.Spec.Retention = &v1.RetentionPolicy{KeepLast: 2} })
	tick := hourAfter(e.clock.Now())
	var names []string
	run := func(phase v1.Phase) string {
		t.Helper()
		e.at("kept", tick)
		name := ScheduleBackupName("kept", tick)
		names = append(names, name)
		waitFor(t, "backup "+name, func() bool { return slices.Contains(e.backups("kept"), name) })
		if phase != "" {
			e.setPhase(name, phase, tick)
		}
		tick = tick.Add(time.Hour)
		return name
	}
	run(v1.PhaseCompleted)
	run(v1.PhaseFailed)
	e.waitBackups("kept", names[0], names[1]) // the failed one is newer than every kept one: it stays
	run(v1.PhaseCompleted)
	e.waitBackups("kept", names[0], names[2]) // now a newer one is kept
	run(v1.PhaseCompleted)
	e.waitBackups("kept", names[2], names[3])
	running := run("")
	time.Sleep(300 * time.Millisecond)
	e.waitBackups("kept", names[2], names[3], running)
	e.setPhase(running, v1.PhaseCompleted, tick.Add(-time.Hour))
	e.waitBackups("kept", names[3], running)
	waitFor(t, "Retention events", func() bool { return slices.Contains(e.eventReasons("kept"), "Retention") })

	// A backup of another schedule, or of none, is not this schedule's to delete.
	other := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "manual"}}
	if err := e.cl.Create(e.ctx, other); err != nil {
		t.Fatal(err)
	}
	e.setPhase("manual", v1.PhaseCompleted, tick.Add(-10*time.Hour))
	run(v1.PhaseCompleted)
	e.waitBackups("kept", running, names[len(names)-1])
	if err := e.cl.Get(e.ctx, client.ObjectKeyFromObject(other), other); err != nil {
		t.Errorf("backup manual: %v", err)
	}
}
