//go:build integration

package controller

import (
	"context"
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

type maintenanceEnv struct {
	t   *testing.T
	ctx context.Context
	cl  client.Client
	ns  string
}

func newMaintenanceEnv(t *testing.T) *maintenanceEnv {
	t.Helper()
	cl, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	e := &maintenanceEnv{t: t, ctx: context.Background(), cl: cl, ns: randomName("straddle")}
	if err := cl.Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *maintenanceEnv) repository(name string, spec v1.BackupRepositorySpec) *v1.BackupRepository {
	e.t.Helper()
	br := &v1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: name}, Spec: spec}
	if err := e.cl.Create(e.ctx, br); err != nil {
		e.t.Fatal(err)
	}
	return br
}

func (e *maintenanceEnv) get(name string) *v1.BackupRepository {
	e.t.Helper()
	var br v1.BackupRepository
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &br); err != nil {
		e.t.Fatal(err)
	}
	return &br
}

// setStatus plays a node-agent (or a backup) writing the status.
func (e *maintenanceEnv) setStatus(name string, mutate func(*v1.BackupRepositoryStatus)) {
	e.t.Helper()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		br := e.get(name)
		mutate(&br.Status)
		return e.cl.Status().Update(e.ctx, br)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *maintenanceEnv) reconcile(r *MaintenanceReconciler, name string) ctrl.Result {
	e.t.Helper()
	res, err := r.Reconcile(e.ctx, ctrl.Request{NamespacedName: client.ObjectKey{Namespace: e.ns, Name: name}})
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// The API server fills in the maintenance defaults and rejects a read-data share outside 1..100.
func TestBackupRepositoryMaintenanceDefaults(t *testing.T) {
	e := newMaintenanceEnv(t)
	br := e.repository("defaults", v1.BackupRepositorySpec{StorageLocation: "default", VolumeNamespace: "shop"})
	s := br.Spec
	if s.MaintenanceFrequency == nil || s.MaintenanceFrequency.Duration != 24*time.Hour || s.CheckFrequency == nil ||
		s.CheckFrequency.Duration != 168*time.Hour || s.CheckReadDataPercent == nil || *s.CheckReadDataPercent != 10 {
		t.Errorf("defaults %+v", s)
	}
	bad := &v1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Namespace: e.ns, Name: "bad"},
		Spec: v1.BackupRepositorySpec{StorageLocation: "default", VolumeNamespace: "shop", CheckReadDataPercent: ptr.To[int32](0)}}
	if err := e.cl.Create(e.ctx, bad); err == nil {
		t.Error("checkReadDataPercent 0 accepted")
	}
}

// With a fake clock: nothing is requested before a prune is due, a prune is requested exactly when due, a
// claim with a fresh heartbeat is left alone and one gone stale is requested again, a postponed prune is
// requested again after the retry delay, and a check when it is due.
func TestMaintenanceRequestsWhenDue(t *testing.T) {
	e := newMaintenanceEnv(t)
	const name = "loc-shop"
	br := e.repository(name, v1.BackupRepositorySpec{StorageLocation: "loc", VolumeNamespace: "shop",
		MaintenanceFrequency: &metav1.Duration{Duration: time.Hour}, CheckFrequency: &metav1.Duration{Duration: 3 * time.Hour}})
	created := br.CreationTimestamp.Time
	clk := clocktesting.NewFakeClock(created)
	r := &MaintenanceReconciler{Client: e.cl, Clock: clk, Namespace: e.ns}
	r.setDefaults()

	if res := e.reconcile(r, name); res.RequeueAfter != time.Hour {
		t.Errorf("new repository: requeue after %v, want 1h (its first prune is due a frequency after creation)", res.RequeueAfter)
	}
	if m := e.get(name).Status.Maintenance; m != nil {
		t.Fatalf("requested %+v before due", m)
	}

	clk.Step(time.Hour)
	e.reconcile(r, name)
	m := e.get(name).Status.Maintenance
	if m == nil || m.Kind != v1.MaintenancePrune || m.Node != "" || m.ID == "" || !m.RequestedTime.Time.Equal(clk.Now()) {
		t.Fatalf("request %+v, want an unclaimed prune requested now", m)
	}
	firstID := m.ID
	if res := e.reconcile(r, name); res.RequeueAfter != 0 || e.get(name).Status.Maintenance.ID != firstID {
		t.Errorf("an unclaimed request was replaced or requeued (%v)", res)
	}

	// node-a claims it and heartbeats.
	e.setStatus(name, func(st *v1.BackupRepositoryStatus) {
		now := metav1.NewTime(clk.Now())
		st.Maintenance.Node, st.Maintenance.StartTime, st.Maintenance.HeartbeatTime = "node-a", &now, &now
	})
	if res := e.reconcile(r, name); res.RequeueAfter != DefaultMaintenanceStaleAfter {
		t.Errorf("claimed run: requeue after %v, want the stale timeout %v", res.RequeueAfter, DefaultMaintenanceStaleAfter)
	}
	clk.Step(time.Minute)
	e.setStatus(name, func(st *v1.BackupRepositoryStatus) { st.Maintenance.HeartbeatTime = ptr.To(metav1.NewTime(clk.Now())) })
	clk.Step(time.Minute)
	if res := e.reconcile(r, name); res.RequeueAfter != time.Minute {
		t.Errorf("a minute after a heartbeat: requeue after %v, want 1m", res.RequeueAfter)
	}
	if m := e.get(name).Status.Maintenance; m.ID != firstID || m.Node != "node-a" {
		t.Fatalf("a live claim was replaced: %+v", m)
	}
	// node-a's agent dies: no heartbeat for the stale timeout.
	clk.Step(time.Minute)
	e.reconcile(r, name)
	m = e.get(name).Status.Maintenance
	if m == nil || m.ID == firstID || m.Node != "" || m.Kind != v1.MaintenancePrune || m.StartTime != nil {
		t.Fatalf("after a stale heartbeat: %+v, want a new unclaimed prune request", m)
	}

	// Another agent claims it; backups hold the repository: the prune is postponed.
	e.setStatus(name, func(st *v1.BackupRepositoryStatus) {
		st.Maintenance = nil
		st.LastPrune = &v1.PruneResult{Time: metav1.NewTime(clk.Now()), Node: "node-b", Postponed: true, Error: "postponed: backups held the repository"}
	})
	if res := e.reconcile(r, name); res.RequeueAfter != DefaultMaintenanceRetryDelay {
		t.Errorf("postponed: requeue after %v, want the retry delay %v", res.RequeueAfter, DefaultMaintenanceRetryDelay)
	}
	clk.Step(DefaultMaintenanceRetryDelay)
	e.reconcile(r, name)
	if m := e.get(name).Status.Maintenance; m == nil || m.Kind != v1.MaintenancePrune {
		t.Fatalf("after the retry delay: %+v, want a prune requested again", m)
	}

	// It succeeds: the next prune is a frequency later, the check is due 3h after creation.
	e.setStatus(name, func(st *v1.BackupRepositoryStatus) {
		now := metav1.NewTime(clk.Now())
		st.Maintenance, st.LastMaintenanceTime = nil, &now
		st.LastPrune = &v1.PruneResult{Time: now, Node: "node-b", BytesFreed: 10}
	})
	toCheck := created.Add(3 * time.Hour).Sub(clk.Now())
	if res := e.reconcile(r, name); res.RequeueAfter != time.Hour {
		t.Errorf("after a prune: requeue after %v, want 1h", res.RequeueAfter)
	}
	clk.Step(toCheck)
	e.reconcile(r, name)
	if m := e.get(name).Status.Maintenance; m == nil || m.Kind != v1.MaintenancePrune {
		t.Fatalf("at 3h: %+v, want the prune first (both are due)", m)
	}
	e.setStatus(name, func(st *v1.BackupRepositoryStatus) {
		now := metav1.NewTime(clk.Now())
		st.Maintenance, st.LastMaintenanceTime = nil, &now
		st.LastPrune = &v1.PruneResult{Time: now}
	})
	e.reconcile(r, name)
	if m := e.get(name).Status.Maintenance; m == nil || m.Kind != v1.MaintenanceCheck {
		t.Fatalf("after the prune at 3h: %+v, want a check", m)
	}
	e.setStatus(name, func(st *v1.BackupRepositoryStatus) {
		st.Maintenance = nil
		st.LastCheck = &v1.CheckResult{Time: metav1.NewTime(clk.Now()), OK: true}
	})
	if res := e.reconcile(r, name); res.RequeueAfter != time.Hour {
		t.Errorf("after the check: requeue after %v, want 1h (the next prune)", res.RequeueAfter)
	}
	if res := e.reconcile(r, name+"-gone"); res != (ctrl.Result{}) {
		t.Errorf("a missing repository: %v", res)
	}
}

// Run by a manager with the real clock, the reconciler requests a prune when due with nothing else changing
// the object: it requeued itself for that moment.
func TestMaintenanceReconcilerRequeues(t *testing.T) {
	e := newMaintenanceEnv(t)
	inInstall := cache.ByObject{Namespaces: map[string]cache.Config{e.ns: {}}}
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		Cache:      cache.Options{ByObject: map[client.Object]cache.ByObject{&v1.BackupRepository{}: inInstall}},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &MaintenanceReconciler{Client: mgr.GetClient(), Namespace: e.ns, Events: mgr.GetEventRecorder("straddle-controller")}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	br := e.repository("loc-shop", v1.BackupRepositorySpec{StorageLocation: "loc", VolumeNamespace: "shop", MaintenanceFrequency: &metav1.Duration{Duration: 2 * time.Second}})
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := e.get(br.Name).Status.Maintenance
		if m != nil {
			if m.Kind != v1.MaintenancePrune || m.RequestedTime.Time.Before(br.CreationTimestamp.Add(2*time.Second)) {
				t.Errorf("request %+v, want a prune no earlier than 2s after creation (%v)", m, br.CreationTimestamp)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no prune requested within 15s of a 2s frequency")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A backup records whether the repository opened without losing what maintenance wrote in the status.
func TestRecordRepositoryKeepsMaintenance(t *testing.T) {
	e := newMaintenanceEnv(t)
	const name = "loc-shop"
	e.repository(name, v1.BackupRepositorySpec{StorageLocation: "loc", VolumeNamespace: "shop"})
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	e.setStatus(name, func(st *v1.BackupRepositoryStatus) {
		st.Maintenance = &v1.MaintenanceRun{ID: "x", Kind: v1.MaintenanceCheck, RequestedTime: now, Node: "node-a", StartTime: &now, HeartbeatTime: &now}
		st.LastMaintenanceTime = &now
		st.LastPrune = &v1.PruneResult{Time: now, BytesFreed: 42}
		st.LastCheck = &v1.CheckResult{Time: now, OK: true, PacksRead: 3}
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: v1.ConditionPruned, Status: metav1.ConditionTrue, Reason: "Succeeded", LastTransitionTime: now})
	})
	r := &BackupReconciler{Client: e.cl, APIReader: e.cl, Namespace: e.ns}
	for _, openErr := range []error{nil, context.DeadlineExceeded} {
		if err := r.recordRepository(e.ctx, "loc", "shop", openErr); err != nil {
			t.Fatal(err)
		}
		st := e.get(name).Status
		wantPhase := v1.RepositoryPhase("Ready")
		if openErr != nil {
			wantPhase = "NotReady"
		}
		if st.Phase != wantPhase {
			t.Errorf("phase %q, want %q", st.Phase, wantPhase)
		}
		if st.Maintenance == nil || st.Maintenance.ID != "x" || st.Maintenance.Node != "node-a" || st.LastPrune == nil || st.LastPrune.BytesFreed != 42 ||
			st.LastCheck == nil || st.LastCheck.PacksRead != 3 || st.LastMaintenanceTime == nil || meta.FindStatusCondition(st.Conditions, v1.ConditionPruned) == nil {
			t.Errorf("maintenance status lost: %+v", st)
		}
	}
}
