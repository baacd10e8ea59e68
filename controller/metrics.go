package controller

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/events"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/servermetrics"
)

// Metrics are the controller's Prometheus metrics (docs/metrics.md). A nil *Metrics records nothing, so
// reconcilers built in tests need none.
type Metrics struct {
	backups          *prometheus.CounterVec
	backupDurations  *prometheus.HistogramVec
	backupVolumes    *prometheus.CounterVec
	backupResources  prometheus.Counter
	skippedVolumes   *prometheus.CounterVec
	restores         *prometheus.CounterVec
	restoreDurations *prometheus.HistogramVec
	restoreVolumes   *prometheus.CounterVec
	restoreObjects   *prometheus.CounterVec
	scheduleRuns     *prometheus.CounterVec
	syncedBackups    *prometheus.CounterVec
	warnings         *prometheus.CounterVec
}

// Label values of the controller's metrics.
const (
	volumeCompleted = "completed"
	volumeFailed    = "failed"
	runCreated      = "created"
	runSkipped      = "skipped"
	syncCreated     = "created"
	syncRemoved     = "removed"
	objectsCreated  = "created"
	objectsSkipped  = "skipped"
)

// NewMetrics creates the controller's metrics and registers them with reg (controller-runtime's
// metrics.Registry in the server, so they are served on --metrics-bind-address).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	durations := prometheus.ExponentialBuckets(1, 4, 9)
	m := &Metrics{
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_backups_total",
			Help: "Backups that ended, by phase (Completed, PartiallyFailed, Failed)."}, []string{"phase"}),
		backupDurations: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "straddle_controller_backup_duration_seconds",
			Help: "How long backups took from start to their terminal phase, by phase.", Buckets: durations}, []string{"phase"}),
		backupVolumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_backup_volumes_total",
			Help: "Pod volumes of ended backups, by result (completed, failed)."}, []string{"result"}),
		backupResources: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_controller_backup_resources_total",
			Help: "Kubernetes objects stored by ended backups."}),
		skippedVolumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_backup_skipped_volumes_total",
			Help: "Pod volumes backups skipped, by reason."}, []string{"reason"}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_restores_total",
			Help: "Restores that ended, by phase (Completed, PartiallyFailed, Failed)."}, []string{"phase"}),
		restoreDurations: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "straddle_controller_restore_duration_seconds",
			Help: "How long restores took from start to their terminal phase, by phase.", Buckets: durations}, []string{"phase"}),
		restoreVolumes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_restore_volumes_total",
			Help: "Pod volumes of ended restores, by result (completed, failed)."}, []string{"result"}),
		restoreObjects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_restore_resources_total",
			Help: "Kubernetes objects of ended restores, by result (created, skipped)."}, []string{"result"}),
		scheduleRuns: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_schedule_runs_total",
			Help: "Schedule runs, by schedule and result (created: a Backup was created; skipped: the previous one still ran)."},
			[]string{"schedule", "result"}),
		syncedBackups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_backup_sync_total",
			Help: "Backups the backup sync created (found in storage) or removed (gone from storage), by action."}, []string{"action"}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_controller_warning_events_total",
			Help: "Warning events the controller recorded (its errors), by kind of object and reason."}, servermetrics.Labels),
	}
	var err error
	for _, c := range []**prometheus.CounterVec{&m.backups, &m.backupVolumes, &m.skippedVolumes, &m.restores, &m.restoreVolumes,
		&m.restoreObjects, &m.scheduleRuns, &m.syncedBackups, &m.warnings} {
		if *c, err = servermetrics.Register(reg, *c); err != nil {
			return nil, err
		}
	}
	for _, h := range []**prometheus.HistogramVec{&m.backupDurations, &m.restoreDurations} {
		if *h, err = servermetrics.Register(reg, *h); err != nil {
			return nil, err
		}
	}
	if m.backupResources, err = servermetrics.Register(reg, m.backupResources); err != nil {
		return nil, err
	}
	// Every terminal phase is exported from the start, so a rate over a fresh controller is 0 rather than absent.
	for _, p := range []v1.Phase{v1.PhaseCompleted, v1.PhasePartiallyFailed, v1.PhaseFailed} {
		m.backups.WithLabelValues(string(p))
		m.restores.WithLabelValues(string(p))
	}
	for _, r := range []string{volumeCompleted, volumeFailed} {
		m.backupVolumes.WithLabelValues(r)
		m.restoreVolumes.WithLabelValues(r)
	}
	for _, a := range []string{syncCreated, syncRemoved} {
		m.syncedBackups.WithLabelValues(a)
	}
	return m, nil
}

// Recorder wraps next so the controller's Warning events are counted in straddle_controller_warning_events_total.
func (m *Metrics) Recorder(next events.EventRecorder) events.EventRecorder {
	if m == nil {
		return next
	}
	return &servermetrics.Recorder{Next: next, Warnings: m.warnings}
}

// backupEnded records a backup that reached a terminal phase; b's status is its final one.
func (m *Metrics) backupEnded(b *v1.Backup) {
	if m == nil {
		return
	}
	st := &b.Status
	phase := string(st.Phase)
	m.backups.WithLabelValues(phase).Inc()
	if st.StartTimestamp != nil && st.CompletionTimestamp != nil {
		m.backupDurations.WithLabelValues(phase).Observe(st.CompletionTimestamp.Sub(st.StartTimestamp.Time).Seconds())
	}
	m.backupVolumes.WithLabelValues(volumeCompleted).Add(float64(st.VolumesCompleted))
	m.backupVolumes.WithLabelValues(volumeFailed).Add(float64(st.VolumesFailed))
	m.backupResources.Add(float64(countObjects(st.Resources)))
	for _, s := range st.SkippedVolumes {
		m.skippedVolumes.WithLabelValues(SkipReason(s)).Inc()
	}
}

// restoreEnded records a restore that reached a terminal phase; rs's status is its final one.
func (m *Metrics) restoreEnded(rs *v1.Restore) {
	if m == nil {
		return
	}
	st := &rs.Status
	phase := string(st.Phase)
	m.restores.WithLabelValues(phase).Inc()
	if st.StartTimestamp != nil && st.CompletionTimestamp != nil {
		m.restoreDurations.WithLabelValues(phase).Observe(st.CompletionTimestamp.Sub(st.StartTimestamp.Time).Seconds())
	}
	m.restoreVolumes.WithLabelValues(volumeCompleted).Add(float64(st.VolumesCompleted))
	m.restoreVolumes.WithLabelValues(volumeFailed).Add(float64(st.VolumesFailed))
	m.restoreObjects.WithLabelValues(objectsCreated).Add(float64(countObjects(st.Resources)))
	m.restoreObjects.WithLabelValues(objectsSkipped).Add(float64(len(st.SkippedResources)))
}

func (m *Metrics) scheduleRun(schedule, result string) {
	if m == nil {
		return
	}
	m.scheduleRuns.WithLabelValues(schedule, result).Inc()
}

func (m *Metrics) synced(action string) {
	if m == nil {
		return
	}
	m.syncedBackups.WithLabelValues(action).Inc()
}

func countObjects(counts []v1.ResourceCount) int {
	n := 0
	for _, c := range counts {
		n += c.Count
	}
	return n
}

// SkipReason is the short reason a skipped volume is counted under (a label value, so few and fixed):
// the volume's type (hostPath, secret, configMap, projected, downwardAPI), "block" for a block-mode claim,
// "podNotRunning", or "other". The status keeps the full sentence.
func SkipReason(s v1.SkippedVolume) string {
	switch {
	case strings.HasPrefix(s.Reason, "pod is "):
		return "podNotRunning"
	case strings.Contains(s.Reason, "volumeMode Block"):
		return "block"
	}
	if kind, _, ok := strings.Cut(s.Reason, " volume:"); ok && !strings.Contains(kind, " ") {
		return kind
	}
	return "other"
}
