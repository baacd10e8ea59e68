package nodeagent

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/servermetrics"
)

// MaintenanceMetrics are the node-agent's Prometheus metrics of repository maintenance.
type MaintenanceMetrics struct {
	runs        *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	bytesFreed  prometheus.Counter
	checkErrors prometheus.Counter
}

// Results a maintenance run is counted under (besides resultCompleted and resultFailed).
const (
	resultPostponed   = "postponed"
	resultErrorsFound = "errors_found"
)

// NewMaintenanceMetrics creates the metrics and registers them with reg, as NewMetrics does.
func NewMaintenanceMetrics(reg prometheus.Registerer) (*MaintenanceMetrics, error) {
	m := &MaintenanceMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "straddle_node_agent_maintenance_runs_total",
			Help: "Repository maintenance runs this agent finished, by kind (Prune, Check) and result (completed, postponed, errors_found, failed)."},
			[]string{"kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "straddle_node_agent_maintenance_duration_seconds",
			Help: "How long repository maintenance runs took, by kind.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}, []string{"kind"}),
		bytesFreed: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_prune_bytes_freed_total",
			Help: "Bytes of packs prune deleted from repositories."}),
		checkErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "straddle_node_agent_check_errors_total",
			Help: "Problems repository checks found (damaged or missing data)."}),
	}
	var err error
	if m.runs, err = servermetrics.Register(reg, m.runs); err != nil {
		return nil, err
	}
	if m.duration, err = servermetrics.Register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.bytesFreed, err = servermetrics.Register(reg, m.bytesFreed); err != nil {
		return nil, err
	}
	if m.checkErrors, err = servermetrics.Register(reg, m.checkErrors); err != nil {
		return nil, err
	}
	// Every series exists from the start, so an alert on a rate sees 0 rather than nothing.
	for _, r := range []string{resultCompleted, resultPostponed, resultFailed} {
		m.runs.WithLabelValues(string(v1.MaintenancePrune), r)
	}
	for _, r := range []string{resultCompleted, resultErrorsFound, resultFailed} {
		m.runs.WithLabelValues(string(v1.MaintenanceCheck), r)
	}
	return m, nil
}

func (m *MaintenanceMetrics) prune(pr v1.PruneResult, took time.Duration) {
	if m == nil {
		return
	}
	result := resultCompleted
	switch {
	case pr.Postponed:
		result = resultPostponed
	case pr.Error != "":
		result = resultFailed
	}
	m.runs.WithLabelValues(string(v1.MaintenancePrune), result).Inc()
	m.duration.WithLabelValues(string(v1.MaintenancePrune)).Observe(took.Seconds())
	m.bytesFreed.Add(float64(pr.BytesFreed))
}

func (m *MaintenanceMetrics) check(cr v1.CheckResult, took time.Duration) {
	if m == nil {
		return
	}
	result := resultCompleted
	switch {
	case cr.Error != "":
		result = resultFailed
	case !cr.OK:
		result = resultErrorsFound
	}
	m.runs.WithLabelValues(string(v1.MaintenanceCheck), result).Inc()
	m.duration.WithLabelValues(string(v1.MaintenanceCheck)).Observe(took.Seconds())
	m.checkErrors.Add(float64(cr.ErrorCount))
}
