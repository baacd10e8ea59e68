// Package servermetrics holds what the controller's and the node-agent's Prometheus metrics share:
// registering on a registry several servers of one process (tests) share, and counting Warning events.
package servermetrics

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	"github.com/prometheus/client_golang/prometheus"
)

// Warning events are counted by the kind of object and the reason, so every failure an Event reports to a
// user is also a Prometheus series an alert can watch.

// Labels of the counter a Recorder increments.
var Labels = []string{"kind", "reason"}

// Recorder passes every event on to Next and counts the Warning ones in Warnings (labels: Labels).
type Recorder struct {
	Next     events.EventRecorder
	Warnings *prometheus.CounterVec
}

// Eventf records the event and counts it if it is a warning.
func (r *Recorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...any) {
	if eventtype == corev1.EventTypeWarning && r.Warnings != nil {
		r.Warnings.WithLabelValues(Kind(regarding), reason).Inc()
	}
	if r.Next != nil {
		r.Next.Eventf(regarding, related, eventtype, reason, action, note, args...)
	}
}

// Kind is the Go type name of obj ("Backup", "PodVolumeBackup"): typed objects from a client often carry no
// TypeMeta, and the type name is what a user reads in kubectl too.
func Kind(obj runtime.Object) string {
	if obj == nil {
		return "none"
	}
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return k
	}
	t := fmt.Sprintf("%T", obj)
	return t[strings.LastIndex(t, ".")+1:]
}
