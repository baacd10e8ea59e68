package controller

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTimeoutChoosesSpecThenInstallDefault(t *testing.T) {
	d := func(x time.Duration) *metav1.Duration { return &metav1.Duration{Duration: x} }
	cases := []struct {
		name           string
		spec           *metav1.Duration
		installDefault time.Duration
		want           time.Duration
	}{
		{"nothing set: 4h", nil, 0, DefaultTimeout},
		{"install default", nil, 30 * time.Minute, 30 * time.Minute},
		{"negative install default: none", nil, -1, 0},
		{"spec wins over the install", d(20 * time.Second), time.Hour, 20 * time.Second},
		{"spec 0: none", d(0), time.Hour, 0},
		{"negative spec: none", d(-time.Second), time.Hour, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Timeout(c.spec, c.installDefault); got != c.want {
				t.Errorf("Timeout(%v, %v) = %v, want %v", c.spec, c.installDefault, got, c.want)
			}
		})
	}
}

func TestDeadlineCountsFromTheStart(t *testing.T) {
	start := metav1.NewTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	if got, ok := Deadline(&start, 20*time.Second); !ok || !got.Equal(start.Add(20*time.Second)) {
		t.Errorf("Deadline(start, 20s) = %v, %v; want start+20s", got, ok)
	}
	if _, ok := Deadline(nil, time.Hour); ok {
		t.Error("a backup not started yet has a deadline")
	}
	if _, ok := Deadline(&start, 0); ok {
		t.Error("no timeout gives a deadline")
	}
}

func TestTimedOutMessageWritesTheDurationAsTyped(t *testing.T) {
	for d, want := range map[time.Duration]string{
		20 * time.Second:                "timed out after 20s",
		4 * time.Hour:                   "timed out after 4h",
		90 * time.Minute:                "timed out after 1h30m",
		time.Minute:                     "timed out after 1m",
		time.Hour + time.Second:         "timed out after 1h0m1s",
		1500 * time.Millisecond:         "timed out after 1.5s",
		2*time.Hour + 10*time.Minute:    "timed out after 2h10m",
		10*time.Minute + 5*time.Second:  "timed out after 10m5s",
		30 * time.Minute:                "timed out after 30m",
		100 * time.Hour:                 "timed out after 100h",
		time.Hour + 10*time.Millisecond: "timed out after 1h0m0.01s",
	} {
		if got := TimedOutMessage(d); got != want {
			t.Errorf("TimedOutMessage(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestSoonestIgnoresZero(t *testing.T) {
	for _, c := range []struct{ a, b, want time.Duration }{
		{0, 0, 0}, {0, time.Second, time.Second}, {time.Second, 0, time.Second}, {time.Second, time.Minute, time.Second}, {time.Minute, time.Second, time.Second},
	} {
		if got := soonest(c.a, c.b); got != c.want {
			t.Errorf("soonest(%v, %v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
