package servermetrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func TestRecorderCountsWarningsAndPassesEverythingOn(t *testing.T) {
	warnings := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_warning_events_total", Help: "test"}, Labels)
	fake := events.NewFakeRecorder(10)
	r := &Recorder{Next: fake, Warnings: warnings}

	r.Eventf(&v1.Backup{}, nil, corev1.EventTypeWarning, "Failed", "Backup", "backup failed: %s", "no location")
	r.Eventf(&v1.Backup{}, nil, corev1.EventTypeWarning, "Failed", "Backup", "again")
	r.Eventf(&v1.Backup{}, nil, corev1.EventTypeNormal, "Completed", "Backup", "fine")
	r.Eventf(&corev1.Pod{}, nil, corev1.EventTypeWarning, "VolumeSkipped", "Backup", "skipped")

	if got := testutil.ToFloat64(warnings.WithLabelValues("Backup", "Failed")); got != 2 {
		t.Errorf("Backup Failed warnings = %v, want 2", got)
	}
	if got := testutil.ToFloat64(warnings.WithLabelValues("Pod", "VolumeSkipped")); got != 1 {
		t.Errorf("Pod VolumeSkipped warnings = %v, want 1", got)
	}
	if got := testutil.CollectAndCount(warnings); got != 2 {
		t.Errorf("%d series, want 2: normal events are not counted", got)
	}
	if len(fake.Events) != 4 {
		t.Errorf("%d events passed on, want 4", len(fake.Events))
	}
}

func TestKindPrefersTypeMeta(t *testing.T) {
	b := &v1.Backup{}
	b.Kind = "Backup"
	if got := Kind(b); got != "Backup" {
		t.Errorf("Kind = %q", got)
	}
	if got := Kind(&v1.PodVolumeRestore{}); got != "PodVolumeRestore" {
		t.Errorf("Kind of a typed object without TypeMeta = %q", got)
	}
	if got := Kind(nil); got != "none" {
		t.Errorf("Kind(nil) = %q", got)
	}
}

func TestRegisterSharesACollectorAlreadyRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "test_total", Help: "test"}
	first, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	second.Inc()
	if got := testutil.ToFloat64(first); got != 1 {
		t.Errorf("the second registration got its own counter: first = %v", got)
	}
	if _, err := Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Name: "test_total", Help: "other"})); err == nil {
		t.Error("a different collector under the same name registered")
	}
}
