package controller

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultTimeout bounds a Backup or Restore that sets no spec.timeout, unless the install says otherwise.
const DefaultTimeout = 4 * time.Hour

// ConditionTimedOut is True once a Backup or Restore ran out of time: its unfinished volumes were failed, and
// it ends with what finished.
const ConditionTimedOut = "TimedOut"

// Timeout is the bound of a Backup or Restore: its spec's, else the install's default (DefaultTimeout if
// zero). Zero from the spec, or a negative install default, means none.
func Timeout(spec *metav1.Duration, installDefault time.Duration) time.Duration {
	switch {
	case spec != nil:
		return max(spec.Duration, 0)
	case installDefault == 0:
		return DefaultTimeout
	}
	return max(installDefault, 0)
}

// Deadline is when work that started at start must have ended under timeout; ok is false when there is
// none: no timeout, or not started yet (the clock runs from the InProgress phase only).
func Deadline(start *metav1.Time, timeout time.Duration) (deadline time.Time, ok bool) {
	if start == nil || timeout <= 0 {
		return time.Time{}, false
	}
	return start.Add(timeout), true
}

// TimedOutMessage is the message of a volume a timeout failed (contract: docs and users grep for it).
func TimedOutMessage(timeout time.Duration) string {
	return "timed out after " + ShortDuration(timeout)
}

// ShortDuration writes a duration as a user would type it: 4h rather than Go's 4h0m0s.
func ShortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// soonest is the earlier of two requeue delays, where zero means "no requeue".
func soonest(a, b time.Duration) time.Duration {
	switch {
	case a <= 0:
		return b
	case b <= 0:
		return a
	}
	return min(a, b)
}
