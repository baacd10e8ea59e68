package main

import (
	"context"
	"fmt"
	"time"

	"k8s.io/utils/clock"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// readErrorGrace is how long reads may keep failing before waiting gives up: a long backup or restore should
// outlive a restarting API server or a network blip.
const readErrorGrace = time.Minute

// notPickedUpAfter is how long a Backup or Restore may stay New before the wait says the controller may not be
// running.
const notPickedUpAfter = 30 * time.Second

// poller is the waiting `backup create --wait` and `restore create --wait` share: read the object every
// interval until it ends, riding out failed reads for a grace period.
type poller struct {
	clock    clock.Clock
	interval time.Duration
	// grace is how long reads may keep failing before waiting gives up (0: readErrorGrace).
	grace time.Duration
	// kind ("backup", "restore") and name are for messages; gone says a read error means the object is gone.
	kind, name string
	gone       func(error) bool
}

// pollStep reads and shows the object once. ended says the wait is over, with outcome its result; readErr is
// a failed read, retried until the grace runs out. elapsed is the time since the wait began.
type pollStep func(ctx context.Context, elapsed func() time.Duration) (ended bool, outcome error, readErr error)

// poll runs step until it ends, the object is gone, reads fail for longer than the grace, or ctx is cancelled
// (Ctrl-C stops the waiting only; the work goes on).
func (p poller) poll(ctx context.Context, step pollStep) error {
	start := p.clock.Now()
	grace := p.grace
	if grace == 0 {
		grace = readErrorGrace
	}
	elapsed := func() time.Duration { return p.clock.Since(start) }
	var failingSince time.Time
	for {
		ended, outcome, err := step(ctx, elapsed)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("stopped waiting; %s %q goes on (straddle %s describe %s shows it)", p.kind, p.name, p.kind, p.name)
		case err != nil && p.gone(err):
			return fmt.Errorf("%s %q was deleted while waiting for it", p.kind, p.name)
		case err != nil && failingSince.IsZero():
			failingSince = p.clock.Now()
		case err != nil && p.clock.Since(failingSince) > grace:
			return fmt.Errorf("gave up waiting for %s %q after %s of failed reads: %w", p.kind, p.name, grace, err)
		case err == nil:
			failingSince = time.Time{}
			if ended {
				return outcome
			}
		}
		select {
		case <-ctx.Done():
		case <-p.clock.After(p.interval):
		}
	}
}

// notPickedUpHint is advice on a kind ("backup", "restore") still New after notPickedUpAfter, else "".
func notPickedUpHint(kind, namespace string, phase v1.Phase, elapsed time.Duration) string {
	if phase != "" && phase != v1.PhaseNew || elapsed < notPickedUpAfter {
		return ""
	}
	return fmt.Sprintf("the controller has not started this %s yet: is it running? (kubectl -n %s get deployment straddle-controller)", kind, namespace)
}
