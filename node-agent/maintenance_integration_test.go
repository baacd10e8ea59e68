//go:build integration

package nodeagent

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/snapshot"
)

// maintenanceEnv is a cluster with a filesystem location whose repository of namespace "shop" holds two
// snapshots, the first of them forgotten, so a prune has garbage to free.
type maintenanceEnv struct {
	*cluster
	loc *v1.BackupStorageLocation
	br  *v1.BackupRepository
	reg *prometheus.Registry
}

func newMaintenanceEnv(t *testing.T) *maintenanceEnv {
	t.Helper()
	c := startCluster(t)
	loc := c.location(t, "fs", v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: t.TempDir()}}, "shop")
	rp := openRepo(t, c, loc)
	first := backupRandom(t, rp, 3<<20)
	backupRandom(t, rp, 3<<20)
	if err := rp.Backend().Delete(context.Background(), snapshot.Name(first.ID)); err != nil {
		t.Fatal(err)
	}
	br := &v1.BackupRepository{ObjectMeta: metav1.ObjectMeta{Name: "fs-shop", Namespace: installNS},
		Spec: v1.BackupRepositorySpec{StorageLocation: "fs", VolumeNamespace: "shop"}}
	c.create(t, br)
	return &maintenanceEnv{cluster: c, loc: loc, br: br, reg: prometheus.NewRegistry()}
}

func openRepo(t *testing.T, c *cluster, loc *v1.BackupStorageLocation) *repo.Repository {
	t.Helper()
	rp, err := bsl.OpenRepository(context.Background(), c.cl, loc, "shop", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rp
}

// backupRandom backs up a folder holding one file of n random bytes.
func backupRandom(t *testing.T, rp *repo.Repository, n int) *snapshot.Snapshot {
	t.Helper()
	dir := t.TempDir()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "data"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := backup.Run(context.Background(), rp, backup.Options{Path: dir, Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return res.Snapshot
}

// newReconciler builds a node's maintenance reconciler whose client acts as the node-agent's service account.
func (e *maintenanceEnv) newReconciler(t *testing.T, node string, cl client.Client, reader client.Reader, tune func(*MaintenanceReconciler)) *MaintenanceReconciler {
	t.Helper()
	m, err := NewMaintenanceMetrics(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	r := &MaintenanceReconciler{Client: cl, APIReader: reader, NodeName: node, Namespace: installNS, Metrics: m,
		HeartbeatInterval: 100 * time.Millisecond, PruneMaxWait: time.Minute}
	if tune != nil {
		tune(r)
	}
	r.setDefaults()
	return r
}

func (e *maintenanceEnv) agentConfig() *rest.Config {
	cfg := rest.CopyConfig(e.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + installNS + ":straddle-node-agent"}
	return cfg
}

// startMaintenanceAgent runs a node's maintenance reconciler through a manager, as `straddle node-agent` does.
func (e *maintenanceEnv) startMaintenanceAgent(t *testing.T, node string, tune func(*MaintenanceReconciler)) *MaintenanceReconciler {
	t.Helper()
	opts := CacheOptions(node)
	opts.ByObject[&v1.BackupRepository{}] = cache.ByObject{Namespaces: map[string]cache.Config{installNS: {}}}
	mgr, err := ctrl.NewManager(e.agentConfig(), ctrl.Options{Scheme: e.scheme, Cache: opts, Metrics: metricsserver.Options{BindAddress: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	r := e.newReconciler(t, node, mgr.GetClient(), mgr.GetAPIReader(), tune)
	r.Recorder = mgr.GetEventRecorder("straddle-node-agent")
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent of %s stopped with: %v", node, err)
		}
	})
	return r
}

// request plays the controller: it writes a maintenance request into the repository's status.
func (e *maintenanceEnv) request(t *testing.T, m v1.MaintenanceRun) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		var br v1.BackupRepository
		if err := e.cl.Get(context.Background(), client.ObjectKeyFromObject(e.br), &br); err != nil {
			return err
		}
		if m.RequestedTime.IsZero() {
			m.RequestedTime = metav1.Now()
		}
		br.Status.Maintenance = &m
		return e.cl.Status().Update(context.Background(), &br)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *maintenanceEnv) get(t *testing.T) *v1.BackupRepository {
	t.Helper()
	var br v1.BackupRepository
	if err := e.cl.Get(context.Background(), client.ObjectKeyFromObject(e.br), &br); err != nil {
		t.Fatal(err)
	}
	return &br
}

// waitFor polls the repository until cond holds or a deadline passes.
func (e *maintenanceEnv) waitFor(t *testing.T, what string, within time.Duration, cond func(*v1.BackupRepository) bool) *v1.BackupRepository {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		br := e.get(t)
		if cond(br) {
			return br
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; status %+v", what, within, br.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two agents claim one request with the same object read: exactly one runs it, and its result lands in status.
func TestMaintenanceClaimRace(t *testing.T) {
	e := newMaintenanceEnv(t)
	e.request(t, v1.MaintenanceRun{ID: "race-1", Kind: v1.MaintenancePrune})
	seen := e.get(t)

	var runs atomic.Int32
	var ran sync.Map
	count := func(node string) func(*MaintenanceReconciler) {
		return func(r *MaintenanceReconciler) {
			r.beforeRun = func(context.Context, *v1.BackupRepository) {
				runs.Add(1)
				ran.Store(node, true)
			}
		}
	}
	var rs []*MaintenanceReconciler
	for _, node := range []string{"node-a", "node-b"} {
		cl, err := client.New(e.agentConfig(), client.Options{Scheme: e.scheme})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, e.newReconciler(t, node, cl, cl, count(node)))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, r := range rs {
		wg.Go(func() {
			<-start
			if _, err := r.take(context.Background(), seen.DeepCopy()); err != nil {
				t.Errorf("take on %s: %v", r.NodeName, err)
			}
		})
	}
	close(start)
	wg.Wait()
	if n := runs.Load(); n != 1 {
		t.Fatalf("%d agents ran the request, want exactly 1", n)
	}
	winner := "node-a"
	if _, ok := ran.Load("node-b"); ok {
		winner = "node-b"
	}
	br := e.get(t)
	if br.Status.Maintenance != nil {
		t.Errorf("request still there after the run: %+v", br.Status.Maintenance)
	}
	lp := br.Status.LastPrune
	if lp == nil || lp.Error != "" || lp.BytesFreed <= 0 || lp.PacksDeleted == 0 || lp.Snapshots != 1 || lp.Node != winner {
		t.Fatalf("lastPrune %+v, want a prune by %s that freed the forgotten snapshot's data", lp, winner)
	}
	if br.Status.LastMaintenanceTime == nil || !br.Status.LastMaintenanceTime.Equal(&lp.Time) {
		t.Errorf("lastMaintenanceTime %v, want the prune's end %v", br.Status.LastMaintenanceTime, lp.Time)
	}
	// The loser, asked again with the object as it is now, leaves it alone.
	for _, r := range rs {
		if res, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(e.br)}); err != nil || res != (ctrl.Result{}) {
			t.Errorf("reconcile after the run on %s: %v %v", r.NodeName, res, err)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Errorf("%d runs after reconciling again, want 1", n)
	}
	got := metricValues(t, e.reg)
	for name, want := range map[string]float64{
		"straddle_node_agent_maintenance_runs_total/Prune/completed": 1,
		"straddle_node_agent_maintenance_runs_total/Prune/failed":    0,
		"straddle_node_agent_maintenance_runs_total/Check/completed": 0,
		"straddle_node_agent_maintenance_duration_seconds/Prune":     1,
		"straddle_node_agent_prune_bytes_freed_total":                float64(lp.BytesFreed),
		"straddle_node_agent_check_errors_total":                     0,
	} {
		if got[name] != want {
			t.Errorf("metric %s = %v, want %v", name, got[name], want)
		}
	}
}

// Two running agents: a check requested is run by one of them and recorded; a prune left claimed by an agent
// of node-a before it restarted is run by node-a's new agent; events say what happened.
func TestMaintenanceAgents(t *testing.T) {
	e := newMaintenanceEnv(t)
	var runs atomic.Int32
	hook := func(r *MaintenanceReconciler) {
		r.beforeRun = func(context.Context, *v1.BackupRepository) { runs.Add(1) }
	}
	e.startMaintenanceAgent(t, "node-a", hook)
	e.startMaintenanceAgent(t, "node-b", hook)

	e.request(t, v1.MaintenanceRun{ID: "check-1", Kind: v1.MaintenanceCheck})
	br := e.waitFor(t, "check recorded", 30*time.Second, func(br *v1.BackupRepository) bool {
		return br.Status.LastCheck != nil && br.Status.Maintenance == nil
	})
	lc := br.Status.LastCheck
	if !lc.OK || lc.Error != "" || lc.ReadDataPercent != 10 || lc.PacksRead == 0 || lc.BytesRead == 0 {
		t.Errorf("lastCheck %+v, want OK with packs read", lc)
	}
	if br.Status.LastPrune != nil || br.Status.LastMaintenanceTime != nil {
		t.Errorf("a check recorded a prune: %+v %v", br.Status.LastPrune, br.Status.LastMaintenanceTime)
	}

	old := metav1.NewTime(time.Now().Add(-time.Hour))
	e.request(t, v1.MaintenanceRun{ID: "prune-1", Kind: v1.MaintenancePrune, Node: "node-a", StartTime: &old, HeartbeatTime: &old})
	br = e.waitFor(t, "prune recorded", 30*time.Second, func(br *v1.BackupRepository) bool {
		return br.Status.LastPrune != nil && br.Status.Maintenance == nil
	})
	if lp := br.Status.LastPrune; lp.Node != "node-a" || lp.Error != "" || lp.BytesFreed <= 0 {
		t.Errorf("lastPrune %+v, want node-a's new agent to run the prune it left claimed", lp)
	}
	// Nothing else runs: the agents' own writes bring the object back to them, and they leave it.
	time.Sleep(time.Second)
	if n := runs.Load(); n != 2 {
		t.Errorf("%d runs, want 2 (one check, one prune)", n)
	}
	want := map[string]bool{ReasonMaintenanceStarted: false, ReasonCheckCompleted: false, ReasonPruneCompleted: false}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var evs eventsv1.EventList
		if err := e.cl.List(context.Background(), &evs, client.InNamespace(installNS)); err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs.Items {
			if ev.Regarding.Kind == "BackupRepository" && ev.Regarding.Name == e.br.Name {
				if _, ok := want[ev.Reason]; ok {
					want[ev.Reason] = true
				}
			}
		}
		missing := false
		for _, ok := range want {
			missing = missing || !ok
		}
		if !missing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events on the BackupRepository: %v, want all", want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A prune that running backups keep from deleting within its wait is recorded as postponed, freeing nothing
// and leaving lastMaintenanceTime alone, so the controller requests it again soon.
func TestMaintenancePrunePostponed(t *testing.T) {
	e := newMaintenanceEnv(t)
	rp := openRepo(t, e.cluster, e.loc)
	held := make(chan struct{})
	release := make(chan struct{})
	lockDone := make(chan error, 1)
	go func() {
		lockDone <- lock.WithLock(context.Background(), rp, lock.Shared, "backup", lock.Options{}, func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	defer func() {
		close(release)
		if err := <-lockDone; err != nil {
			t.Error(err)
		}
	}()
	e.startMaintenanceAgent(t, "node-a", func(r *MaintenanceReconciler) { r.PruneMaxWait = time.Second })
	e.request(t, v1.MaintenanceRun{ID: "prune-1", Kind: v1.MaintenancePrune})
	br := e.waitFor(t, "prune recorded", 30*time.Second, func(br *v1.BackupRepository) bool {
		return br.Status.LastPrune != nil && br.Status.Maintenance == nil
	})
	lp := br.Status.LastPrune
	if !lp.Postponed || lp.BytesFreed != 0 || lp.Error == "" {
		t.Errorf("lastPrune %+v, want postponed", lp)
	}
	if br.Status.LastMaintenanceTime != nil {
		t.Errorf("lastMaintenanceTime %v after a postponed prune", br.Status.LastMaintenanceTime)
	}
}

// An agent whose request is withdrawn (the controller took it for dead and requested the run again) stops
// its run and records nothing; while it runs, it heartbeats.
func TestMaintenanceClaimLost(t *testing.T) {
	e := newMaintenanceEnv(t)
	cause := make(chan error, 1)
	beats := make(chan struct{})
	e.startMaintenanceAgent(t, "node-a", func(r *MaintenanceReconciler) {
		r.beforeRun = func(ctx context.Context, br *v1.BackupRepository) {
			<-beats
			select {
			case <-ctx.Done():
				cause <- context.Cause(ctx)
			case <-time.After(20 * time.Second):
				cause <- errors.New("the run was not cancelled")
			}
		}
	})
	e.request(t, v1.MaintenanceRun{ID: "prune-1", Kind: v1.MaintenancePrune})
	claimed := e.waitFor(t, "claimed", 30*time.Second, func(br *v1.BackupRepository) bool {
		return br.Status.Maintenance != nil && br.Status.Maintenance.Node == "node-a"
	})
	first := claimed.Status.Maintenance.HeartbeatTime.Time
	e.waitFor(t, "heartbeat", 30*time.Second, func(br *v1.BackupRepository) bool {
		m := br.Status.Maintenance
		return m != nil && m.HeartbeatTime != nil && m.HeartbeatTime.After(first)
	})
	close(beats)
	e.request(t, v1.MaintenanceRun{ID: "prune-2", Kind: v1.MaintenancePrune, Node: "node-b", StartTime: ptr.To(metav1.Now()), HeartbeatTime: ptr.To(metav1.Now())})
	if err := <-cause; !errors.Is(err, errClaimLost) {
		t.Fatalf("run ended with %v, want the claim lost", err)
	}
	time.Sleep(500 * time.Millisecond)
	br := e.get(t)
	if br.Status.LastPrune != nil || br.Status.Maintenance == nil || br.Status.Maintenance.ID != "prune-2" {
		t.Errorf("status %+v, want node-b's request untouched and no result", br.Status)
	}
}

// metricValues reads reg's counters and histograms' sample counts by name and label values.
func metricValues(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			name := f.GetName()
			for _, l := range mt.GetLabel() {
				name += "/" + l.GetValue()
			}
			switch {
			case mt.GetCounter() != nil:
				got[name] = mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				got[name] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	return got
}
