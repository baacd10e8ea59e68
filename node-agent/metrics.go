package nodeagent

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/events"

	"github.com/straddle-io/straddle/servermetrics"
)

// Metrics are the node-agent's Prometheus metrics of volume backups and restores (DESIGN §7).
type Metrics struct {
	backups    *prometheus.CounterVec
	running    prometheus.Gauge
	bytes      prometheus.Counter
	bytesAdded prometheus.Counter
	bytesRead  prometheus.Counter
	stored     prometheus.Counter
	files      prometheus.Counter
	duration   prometheus.Histogram

	restores         *prometheus.CounterVec
	restoresRunning  prometheus.Gauge
	restoreBytes     prometheus.Counter
	restoreFiles     prometheus.Counter
	restoreDurations prometheus.Histogram

	warnings *prometheus.CounterVec
}

// Results a finished backup is counted under.
const (
	resultCompleted = "completed"
	resultFailed    = "failed"
	resultCanceled  = "canceled"
)

// NewMetrics creates the metrics and registers them with reg (the manager's registry, so they are served
// on --metrics-bind-address).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		backups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_node_agent_volume_backups_total",
			Help: "Volume backups this agent finished, by result (completed, failed, canceled)."}, []string{"result"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "straddle_node_agent_volume_backups_running",
			Help: "Volume backups running now."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_backup_bytes_total",
			Help: "Bytes of the files in completed volume backups."}),
		bytesAdded: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_backup_bytes_added_total",
			Help: "Bytes new to the repository (before compression) added by completed volume backups."}),
		bytesRead: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_backup_bytes_read_total",
			Help: "Bytes completed volume backups read from files (unchanged files are not read)."}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_backup_bytes_stored_total",
			Help: "Bytes completed volume backups wrote to the repository (compressed and encrypted)."}),
		files: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_backup_files_total",
			Help: "Files in completed volume backups."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "straddle_node_agent_volume_backup_duration_seconds",
			Help: "How long volume backups took, completed or not.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_node_agent_volume_restores_total",
			Help: "Volume restores this agent finished, by result (completed, failed, canceled)."}, []string{"result"}),
		restoresRunning: prometheus.NewGauge(prometheus.GaugeOpts{Name: "straddle_node_agent_volume_restores_running",
			Help: "Volume restores writing now."}),
		restoreBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_restore_bytes_total",
			Help: "Bytes written by completed volume restores."}),
		restoreFiles: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_restore_files_total",
			Help: "Files written by completed volume restores."}),
		restoreDurations: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "straddle_node_agent_volume_restore_duration_seconds",
			Help: "How long volume restores took, completed or not, from finding the volume's folder.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		warnings: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_node_agent_warning_events_total",
			Help: "Warning events the node-agent recorded (its errors), by kind of object and reason."}, servermetrics.Labels),
	}
	var err error
	if m.bytesRead, err = servermetrics.Register(reg, m.bytesRead); err != nil {
		return nil, err
	}
	if m.stored, err = servermetrics.Register(reg, m.stored); err != nil {
		return nil, err
	}
	if m.warnings, err = servermetrics.Register(reg, m.warnings); err != nil {
		return nil, err
	}
	if m.backups, err = servermetrics.Register(reg, m.backups); err != nil {
		return nil, err
	}
	if m.running, err = servermetrics.Register(reg, m.running); err != nil {
		return nil, err
	}
	if m.bytes, err = servermetrics.Register(reg, m.bytes); err != nil {
		return nil, err
	}
	if m.bytesAdded, err = servermetrics.Register(reg, m.bytesAdded); err != nil {
		return nil, err
	}
	if m.files, err = servermetrics.Register(reg, m.files); err != nil {
		return nil, err
	}
	if m.duration, err = servermetrics.Register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.restores, err = servermetrics.Register(reg, m.restores); err != nil {
		return nil, err
	}
	if m.restoresRunning, err = servermetrics.Register(reg, m.restoresRunning); err != nil {
		return nil, err
	}
	if m.restoreBytes, err = servermetrics.Register(reg, m.restoreBytes); err != nil {
		return nil, err
	}
	if m.restoreFiles, err = servermetrics.Register(reg, m.restoreFiles); err != nil {
		return nil, err
	}
	if m.restoreDurations, err = servermetrics.Register(reg, m.restoreDurations); err != nil {
		return nil, err
	}
	// Every result is exported from the start, so a rate over a fresh agent is 0 rather than absent.
	for _, r := range []string{resultCompleted, resultFailed, resultCanceled} {
		m.backups.WithLabelValues(r)
		m.restores.WithLabelValues(r)
	}
	return m, nil
}

// Recorder wraps next so the node-agent's Warning events are counted in
// straddle_node_agent_warning_events_total.
func (m *Metrics) Recorder(next events.EventRecorder) events.EventRecorder {
	if m == nil {
		return next
	}
	return &servermetrics.Recorder{Next: next, Warnings: m.warnings}
}

// started counts a backup as running; the returned func records its end.
func (m *Metrics) started() (done func(res *volumeResult, err error)) {
	if m == nil {
		return func(*volumeResult, error) {}
	}
	end := track(m.running, m.duration, m.backups)
	return func(res *volumeResult, err error) {
		if end(err) {
			m.bytes.Add(float64(res.Progress.BytesDone))
			m.files.Add(float64(res.Progress.FilesDone))
			m.bytesAdded.Add(float64(res.Stats.BytesAdded))
			m.bytesRead.Add(float64(res.Stats.BytesRead))
			m.stored.Add(float64(res.Stats.BytesStored))
		}
	}
}

// restoreStarted counts a restore as running; the returned func records its end.
func (m *Metrics) restoreStarted() (done func(res *restoreResult, err error)) {
	if m == nil {
		return func(*restoreResult, error) {}
	}
	end := track(m.restoresRunning, m.restoreDurations, m.restores)
	return func(res *restoreResult, err error) {
		if end(err) {
			m.restoreBytes.Add(float64(res.Progress.BytesDone))
			m.restoreFiles.Add(float64(res.Progress.FilesDone))
		}
	}
}

// track counts one backup or restore as running; the returned func records its end: the duration, and the
// outcome (canceled by deletion, failed, completed) in outcomes. It reports whether the work completed, so
// the caller adds what only completed work counts.
func track(running prometheus.Gauge, duration prometheus.Observer, outcomes *prometheus.CounterVec) (end func(err error) (completed bool)) {
	running.Inc()
	start := time.Now()
	return func(err error) bool {
		running.Dec()
		duration.Observe(time.Since(start).Seconds())
		switch {
		case errors.Is(err, errDeleted):
			outcomes.WithLabelValues(resultCanceled).Inc()
		case err != nil:
			outcomes.WithLabelValues(resultFailed).Inc()
		default:
			outcomes.WithLabelValues(resultCompleted).Inc()
			return true
		}
		return false
	}
}
