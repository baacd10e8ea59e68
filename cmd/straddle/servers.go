package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2/textlogger"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller"
	"github.com/straddle-io/straddle/controller/hooks"
	"github.com/straddle-io/straddle/controller/resources"
	"github.com/straddle-io/straddle/deploy"
	nodeagent "github.com/straddle-io/straddle/node-agent"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/prune"
)

// serverFlags follow controller-runtime's conventions, so several servers can run on one machine in tests.
type serverFlags struct {
	clusterFlags
	namespace   string
	metricsAddr string
	probeAddr   string
	verbosity   int
}

func (f *serverFlags) register(cmd *cobra.Command) {
	f.clusterFlags.register(cmd)
	cmd.Flags().StringVar(&f.namespace, "namespace", deploy.DefaultNamespace, "namespace Straddle is installed in")
	cmd.Flags().StringVar(&f.metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	cmd.Flags().StringVar(&f.probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	cmd.Flags().IntVarP(&f.verbosity, "v", "v", 0, "log verbosity (0: what a reconciler did and what failed; higher: more detail)")
}

func (f *serverFlags) manager(opts ctrl.Options) (ctrl.Manager, error) {
	cfg, err := f.restConfig()
	if err != nil {
		return nil, err
	}
	// client-go's default of 5 requests per second (burst 10) made a 3,000-volume backup take ten minutes
	// to plan (bench/RESULTS.md); like controller-runtime's own config loader, the servers leave the pacing to
	// the API server's priority and fairness.
	cfg.QPS = -1
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	opts.Scheme = scheme
	// controller-runtime refuses a controller name seen before in the process, to keep metric series apart. A
	// server process builds one manager; the command's tests build one per run in a single process.
	skip := true
	opts.Controller.SkipNameValidation = &skip
	// Without a logger controller-runtime drops its own logs (and says so): the servers log klog-style text to
	// stderr, which the kubelet collects.
	ctrl.SetLogger(textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(f.verbosity), textlogger.Output(os.Stderr))))
	opts.Metrics = metricsserver.Options{BindAddress: f.metricsAddr}
	opts.HealthProbeBindAddress = f.probeAddr
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("start manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

type controllerOptions struct {
	serverFlags
	leaderElect bool
	// defaultVolumesToFsBackup is the install's default for Backups that do not set it; the Backup
	// reconciler reads it.
	defaultVolumesToFsBackup bool
	// defaultExcludedVolumes are volume names default-all leaves out unless a pod's opt-in annotation names them.
	defaultExcludedVolumes []string
	// maxVolumesInFlight caps unfinished PodVolumeBackups cluster-wide, so a large cluster does not
	// stampede its storage.
	maxVolumesInFlight int
	// restorePriorities orders the resources a restore creates; the rest follow by name.
	restorePriorities []string
	// defaultBackupTimeout and defaultRestoreTimeout bound Backups and Restores that set no spec.timeout.
	defaultBackupTimeout, defaultRestoreTimeout time.Duration
	// restoreVolumeTimeout fails the volumes of a restored pod that gets no node within it.
	restoreVolumeTimeout time.Duration
	// maintenanceRetryDelay is how soon a failed or postponed prune or check is requested again.
	maintenanceRetryDelay time.Duration
	// backupSyncPeriod is how often the storage locations' backups are synced into the cluster; 0 disables it.
	backupSyncPeriod time.Duration
	// webhookPort is where the restore webhook is served (0: not at all); webhookURL, when set, is the base
	// URL the API server calls it at instead of the straddle-webhook Service (a controller outside the cluster).
	webhookPort int
	webhookURL  string
	// maintenanceStaleAfter is how long a claimed run may go without a heartbeat before it is requested again.
	maintenanceStaleAfter time.Duration
	// passwordRotationGrace is how long both passwords of a rotation open the repositories after the Secret changed.
	passwordRotationGrace time.Duration
}

func newControllerCmd() *cobra.Command {
	o := &controllerOptions{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the Straddle controller (in the cluster, as the straddle-controller Deployment)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}
	o.serverFlags.register(cmd)
	cmd.Flags().BoolVar(&o.leaderElect, "leader-elect", false, "run only while holding the leader lease, so replicas can stand by")
	cmd.Flags().BoolVar(&o.defaultVolumesToFsBackup, "default-volumes-to-fs-backup", false, "back up every pod volume unless excluded by annotation, for Backups that do not say")
	cmd.Flags().StringSliceVar(&o.defaultExcludedVolumes, "default-excluded-volumes", nil,
		"volume names (comma-separated) not backed up under default-all unless a pod's backup-volumes annotation names them, e.g. istio-envoy,istio-data")
	cmd.Flags().IntVar(&o.maxVolumesInFlight, "max-volumes-in-flight", controller.DefaultMaxVolumesInFlight, "most PodVolumeBackups not yet finished, cluster-wide")
	cmd.Flags().StringSliceVar(&o.restorePriorities, "restore-resource-priorities", controller.DefaultRestorePriorities,
		"resources a restore creates first, in this order (resource or resource.group); the rest follow by name")
	cmd.Flags().DurationVar(&o.defaultBackupTimeout, "default-backup-timeout", controller.DefaultTimeout,
		"how long a Backup that sets no spec.timeout may run, from its start, before its unfinished volumes fail (0: no bound)")
	cmd.Flags().DurationVar(&o.defaultRestoreTimeout, "default-restore-timeout", controller.DefaultTimeout,
		"how long a Restore that sets no spec.timeout may run, from its start, before its unfinished volumes fail (0: no bound)")
	cmd.Flags().DurationVar(&o.restoreVolumeTimeout, "restore-volume-timeout", controller.DefaultRestoreVolumeTimeout,
		"how long a restored pod may stay without a node before its volumes count as failed")
	cmd.Flags().DurationVar(&o.maintenanceRetryDelay, "maintenance-retry-delay", controller.DefaultMaintenanceRetryDelay,
		"how soon a repository prune or check that failed, or that running backups postponed, is requested again (at most the repository's frequency)")
	cmd.Flags().DurationVar(&o.backupSyncPeriod, "backup-sync-period", controller.DefaultBackupSyncPeriod,
		"how often the storage locations are listed to create the Backups another cluster wrote and remove those deleted there (0 disables)")
	cmd.Flags().IntVar(&o.webhookPort, "webhook-port", 9443, "port of the restore webhook, which gives pods that restored controllers create restore-wait (0 disables it)")
	cmd.Flags().StringVar(&o.webhookURL, "webhook-url", "", "base URL the API server calls the restore webhook at, instead of the "+controller.WebhookServiceName+
		" Service (a controller running outside the cluster), e.g. https://127.0.0.1:9443; its host goes into the certificate")
	cmd.Flags().DurationVar(&o.maintenanceStaleAfter, "maintenance-stale-after", controller.DefaultMaintenanceStaleAfter,
		"how long a node-agent's maintenance run may go without a heartbeat before it is taken for dead and the run requested again (several node-agent heartbeat intervals)")
	cmd.Flags().DurationVar(&o.passwordRotationGrace, "password-rotation-grace", controller.DefaultPasswordRotationGrace,
		"how long the old repository password still opens the repositories after a rotation switched the Secret, for agents that read it just before")
	return cmd
}

func (o *controllerOptions) run(ctx context.Context) error {
	if o.maxVolumesInFlight < 1 {
		return fmt.Errorf("--max-volumes-in-flight %d must be at least 1", o.maxVolumesInFlight)
	}
	if o.defaultBackupTimeout < 0 || o.defaultRestoreTimeout < 0 {
		return fmt.Errorf("--default-backup-timeout %s and --default-restore-timeout %s must not be negative", o.defaultBackupTimeout, o.defaultRestoreTimeout)
	}
	if o.restoreVolumeTimeout <= 0 {
		return fmt.Errorf("--restore-volume-timeout %s must be positive", o.restoreVolumeTimeout)
	}
	if o.maintenanceRetryDelay <= 0 {
		return fmt.Errorf("--maintenance-retry-delay %s must be positive", o.maintenanceRetryDelay)
	}
	if o.maintenanceStaleAfter <= 0 {
		return fmt.Errorf("--maintenance-stale-after %s must be positive", o.maintenanceStaleAfter)
	}
	if o.passwordRotationGrace <= 0 {
		return fmt.Errorf("--password-rotation-grace %s must be positive", o.passwordRotationGrace)
	}
	if o.backupSyncPeriod < 0 {
		return fmt.Errorf("--backup-sync-period %s must not be negative", o.backupSyncPeriod)
	}
	hook, err := o.webhookOptions()
	if err != nil {
		return err
	}
	inInstall := cache.ByObject{Namespaces: map[string]cache.Config{o.namespace: {}}}
	mgr, err := o.manager(ctrl.Options{
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "straddle-controller.straddle.io",
		LeaderElectionNamespace: o.namespace,
		// Straddle's own objects live in the install namespace; the cache holds nothing else of them. Every
		// pod of the cluster is cached (backups choose from them, restores follow theirs), so the cache keeps
		// no managed fields, often a third of a pod's bytes: the controller never reads them nor applies.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields(), ByObject: map[client.Object]cache.ByObject{
			&v1.BackupStorageLocation{}: inInstall,
			&v1.Backup{}:                inInstall,
			&v1.PodVolumeBackup{}:       inInstall,
			&v1.BackupRepository{}:      inInstall,
			&v1.Restore{}:               inInstall,
			&v1.PodVolumeRestore{}:      inInstall,
			&v1.Schedule{}:              inInstall,
		}},
	})
	if err != nil {
		return err
	}
	bsl := &controller.BackupStorageLocationReconciler{Client: mgr.GetClient(), Secrets: mgr.GetAPIReader(), Clock: clock.RealClock{}}
	if err := bsl.SetupWithManager(mgr); err != nil {
		return err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	core, err := kubernetes.NewForConfig(mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	cm, err := controller.NewMetrics(metrics.Registry)
	if err != nil {
		return err
	}
	events := cm.Recorder(mgr.GetEventRecorder("straddle-controller"))
	backups := &controller.BackupReconciler{
		Client:                   mgr.GetClient(),
		APIReader:                mgr.GetAPIReader(),
		Clock:                    clock.RealClock{},
		Events:                   events,
		Metrics:                  cm,
		Namespace:                o.namespace,
		DefaultVolumesToFsBackup: o.defaultVolumesToFsBackup,
		DefaultExcludedVolumes:   o.defaultExcludedVolumes,
		MaxVolumesInFlight:       o.maxVolumesInFlight,
		Resources:                &resources.Collector{Discovery: disco, Dynamic: dyn, SecretsExcludedIn: o.namespace},
		DefaultTimeout:           noBoundIfZero(o.defaultBackupTimeout),
		Exec:                     &hooks.PodExec{Config: mgr.GetConfig(), REST: core.CoreV1().RESTClient()},
	}
	if err := backups.SetupWithManager(mgr); err != nil {
		return err
	}
	schedules := &controller.ScheduleReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Clock:     clock.RealClock{},
		Events:    events,
		Metrics:   cm,
		Namespace: o.namespace,
	}
	if err := schedules.SetupWithManager(mgr); err != nil {
		return err
	}
	restores := &controller.RestoreReconciler{
		Client:         mgr.GetClient(),
		APIReader:      mgr.GetAPIReader(),
		Clock:          clock.RealClock{},
		Events:         events,
		Metrics:        cm,
		Namespace:      o.namespace,
		Priorities:     o.restorePriorities,
		VolumeTimeout:  o.restoreVolumeTimeout,
		DefaultTimeout: noBoundIfZero(o.defaultRestoreTimeout),
	}
	if err := restores.SetupWithManager(mgr); err != nil {
		return err
	}
	maintenance := &controller.MaintenanceReconciler{
		Client:     mgr.GetClient(),
		Clock:      clock.RealClock{},
		Events:     events,
		Namespace:  o.namespace,
		RetryDelay: o.maintenanceRetryDelay,
		StaleAfter: o.maintenanceStaleAfter,
	}
	if err := maintenance.SetupWithManager(mgr); err != nil {
		return err
	}
	rotation := &controller.PasswordRotationReconciler{
		Client:    mgr.GetClient(),
		Secrets:   mgr.GetAPIReader(),
		Clock:     clock.RealClock{},
		Events:    events,
		Namespace: o.namespace,
		Grace:     o.passwordRotationGrace,
	}
	if err := rotation.SetupWithManager(mgr); err != nil {
		return err
	}
	if o.backupSyncPeriod > 0 {
		syncer := &controller.BackupSyncer{
			Client:    mgr.GetClient(),
			APIReader: mgr.GetAPIReader(),
			Clock:     clock.RealClock{},
			Events:    events,
			Metrics:   cm,
			Namespace: o.namespace,
			Period:    o.backupSyncPeriod,
		}
		if err := mgr.Add(syncer); err != nil {
			return fmt.Errorf("add the backup sync: %w", err)
		}
	}
	if hook != nil {
		if err := hook.setup(ctx, mgr, o.namespace); err != nil {
			return err
		}
	}
	return mgr.Start(ctx)
}

type nodeAgentOptions struct {
	serverFlags
	nodeName    string
	hostPodsDir string
	concurrency int
	// pruneMaxWait bounds how long a prune waits for running backups before it is postponed.
	pruneMaxWait time.Duration
	// heartbeatInterval is how often a running maintenance run says so in its BackupRepository.
	heartbeatInterval time.Duration
	// memoryLimit bounds the repository indexes held in memory (parseMemoryLimit).
	memoryLimit string
	// checkpointInterval is how often a running backup indexes what it stored, for a restarted agent to reuse.
	checkpointInterval time.Duration
}

func newNodeAgentCmd() *cobra.Command {
	o := &nodeAgentOptions{}
	cmd := &cobra.Command{
		Use:   "node-agent",
		Short: "Run a Straddle node-agent (in the cluster, as the straddle-node-agent DaemonSet)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context())
		},
	}
	o.serverFlags.register(cmd)
	cmd.Flags().StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "the node this agent serves (env NODE_NAME)")
	cmd.Flags().StringVar(&o.hostPodsDir, "host-pods-dir", "/host_pods", "where the kubelet's pods directory is mounted")
	cmd.Flags().IntVar(&o.concurrency, "concurrency", 2, "volumes worked on at once")
	cmd.Flags().DurationVar(&o.pruneMaxWait, "prune-max-wait", prune.DefaultMaxWait, "how long a repository prune waits for running backups before it deletes nothing and is postponed")
	cmd.Flags().DurationVar(&o.heartbeatInterval, "maintenance-heartbeat-interval", nodeagent.DefaultHeartbeatInterval,
		"how often a running prune or check says so in its BackupRepository (keep it several times under the controller's --maintenance-stale-after)")
	cmd.Flags().StringVar(&o.memoryLimit, "memory-limit", "auto",
		"memory the agent should stay within, such as 512Mi: a quarter of it, shared by the --concurrency volumes, bounds the repository indexes in memory; beyond that they are paged to temporary files (auto: the container's cgroup limit; 0: none)")
	cmd.Flags().DurationVar(&o.checkpointInterval, "checkpoint-interval", nodeagent.DefaultCheckpointInterval,
		"how often a running backup indexes the packs it stored, so a backup resumed after the agent restarts re-uploads at most this much work (each checkpoint writes an index object)")
	// A tuning knob (tests shorten it); the default suits real volumes.
	_ = cmd.Flags().MarkHidden("checkpoint-interval")
	return cmd
}

func (o *nodeAgentOptions) run(ctx context.Context) error {
	if o.nodeName == "" {
		return errors.New("no node name: set NODE_NAME (the DaemonSet sets it from spec.nodeName) or pass --node-name")
	}
	if o.concurrency < 1 {
		return fmt.Errorf("--concurrency %d must be at least 1", o.concurrency)
	}
	if o.pruneMaxWait <= 0 {
		return fmt.Errorf("--prune-max-wait %s must be positive", o.pruneMaxWait)
	}
	if o.heartbeatInterval <= 0 {
		return fmt.Errorf("--maintenance-heartbeat-interval %s must be positive", o.heartbeatInterval)
	}
	limit, err := parseMemoryLimit(o.memoryLimit, cgroupMemoryFiles)
	if err != nil {
		return err
	}
	// Each volume being worked on opens its own repository: they share the budget.
	paging := index.Paging{Budget: repo.IndexBudget(limit) / int64(o.concurrency)}
	if limit > 0 {
		paging.Budget = max(1, paging.Budget)
	}
	if o.checkpointInterval <= 0 {
		return fmt.Errorf("--checkpoint-interval %s must be positive", o.checkpointInterval)
	}
	if fi, err := os.Stat(o.hostPodsDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("host pods directory %s is not mounted: %v", o.hostPodsDir, err)
	}
	cacheOpts := nodeagent.CacheOptions(o.nodeName)
	// BackupRepositories (maintenance requests) live in the install namespace only.
	cacheOpts.ByObject[&v1.BackupRepository{}] = cache.ByObject{Namespaces: map[string]cache.Config{o.namespace: {}}}
	mgr, err := o.manager(ctrl.Options{Cache: cacheOpts})
	if err != nil {
		return err
	}
	m, err := nodeagent.NewMetrics(metrics.Registry)
	if err != nil {
		return err
	}
	events := m.Recorder(mgr.GetEventRecorder("straddle-node-agent"))
	pvbs := &nodeagent.PodVolumeBackupReconciler{
		Client:             mgr.GetClient(),
		APIReader:          mgr.GetAPIReader(),
		Recorder:           events,
		Clock:              clock.RealClock{},
		NodeName:           o.nodeName,
		Namespace:          o.namespace,
		HostPodsDir:        o.hostPodsDir,
		IndexPaging:        paging,
		Metrics:            m,
		CheckpointInterval: o.checkpointInterval,
	}
	if err := pvbs.SetupWithManager(mgr, o.concurrency); err != nil {
		return err
	}
	pvrs := &nodeagent.PodVolumeRestoreReconciler{
		Client:      mgr.GetClient(),
		APIReader:   mgr.GetAPIReader(),
		Recorder:    events,
		Clock:       clock.RealClock{},
		NodeName:    o.nodeName,
		Namespace:   o.namespace,
		HostPodsDir: o.hostPodsDir,
		IndexPaging: paging,
		Metrics:     m,
	}
	// Restores have their own limit of the same size: a restored pod waits for its data, and must not
	// queue behind a long backup.
	if err := pvrs.SetupWithManager(mgr, o.concurrency); err != nil {
		return err
	}
	cleanup := &nodeagent.MarkerCleanupReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), NodeName: o.nodeName, HostPodsDir: o.hostPodsDir}
	if err := cleanup.SetupWithManager(mgr); err != nil {
		return err
	}
	mm, err := nodeagent.NewMaintenanceMetrics(metrics.Registry)
	if err != nil {
		return err
	}
	maintenance := &nodeagent.MaintenanceReconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          events,
		Clock:             clock.RealClock{},
		NodeName:          o.nodeName,
		Namespace:         o.namespace,
		PruneMaxWait:      o.pruneMaxWait,
		HeartbeatInterval: o.heartbeatInterval,
		Metrics:           mm,
	}
	// Its own single worker: one maintenance run at a time, never in a backup's or restore's slot.
	if err := maintenance.SetupWithManager(mgr); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// noBoundIfZero maps a timeout flag's 0 ("no bound") to the reconcilers' negative, whose zero means the default.
func noBoundIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
