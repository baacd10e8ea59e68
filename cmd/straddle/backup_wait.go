package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// waitView shows a backup while `create --wait` waits for it.
type waitView interface {
	// show draws the backup's state; hint, when not empty, is advice on a backup that does not move.
	show(b *v1.Backup, pvbs []v1.PodVolumeBackup, elapsed time.Duration, hint string)
	// finish leaves the last state on screen, ready for what is printed next.
	finish()
}

// backupWaiter polls a Backup and its PodVolumeBackups until the Backup ends.
type backupWaiter struct {
	client    client.Client
	namespace string
	name      string
	clock     clock.Clock
	interval  time.Duration
	view      waitView
	// grace is how long reads may keep failing before waiting gives up (0: readErrorGrace).
	grace time.Duration
}

// wait returns nil once the backup Completed, and an error naming the phase and the failed volumes if it
// ended otherwise. Cancelling ctx (Ctrl-C) stops the waiting only; the backup goes on.
func (w *backupWaiter) wait(ctx context.Context) error {
	defer w.view.finish()
	p := poller{clock: w.clock, interval: w.interval, grace: w.grace, kind: "backup", name: w.name,
		gone: func(err error) bool { return errors.As(err, new(*backupNotFoundError)) }}
	return p.poll(ctx, func(ctx context.Context, elapsed func() time.Duration) (bool, error, error) {
		b, pvbs, err := w.read(ctx)
		if err != nil {
			return false, nil, err
		}
		e := elapsed()
		w.view.show(b, pvbs, e, notPickedUpHint("backup", w.namespace, b.Status.Phase, e))
		if isTerminalPhase(phaseOf(b)) {
			return true, backupOutcome(b, pvbs), nil
		}
		if b.Status.Phase == v1.PhaseDeleting {
			return true, fmt.Errorf("backup %q is being deleted", w.name), nil
		}
		return false, nil, nil
	})
}

func (w *backupWaiter) read(ctx context.Context) (*v1.Backup, []v1.PodVolumeBackup, error) {
	b, err := getBackup(ctx, w.client, w.namespace, w.name)
	if err != nil {
		return nil, nil, err
	}
	pvbs, err := listVolumeBackups(ctx, w.client, b)
	if err != nil {
		return nil, nil, err
	}
	return b, pvbs, nil
}

// backupOutcome is nil for a Completed backup, else one sentence with the phase and what failed.
func backupOutcome(b *v1.Backup, pvbs []v1.PodVolumeBackup) error {
	phase := phaseOf(b)
	if phase == v1.PhaseCompleted {
		return nil
	}
	var reasons []string
	for i := range pvbs {
		p := &pvbs[i]
		if p.Status.Phase == v1.VolumePhaseFailed || p.Status.Phase == v1.VolumePhaseCanceled {
			reasons = append(reasons, fmt.Sprintf("volume %s %s: %s", volumeName(p), strings.ToLower(string(p.Status.Phase)), oneLine(p.Status.Message)))
		}
	}
	for _, e := range b.Status.Errors {
		reasons = append(reasons, oneLine(e))
	}
	if len(reasons) == 0 {
		return fmt.Errorf("backup %q ended %s (straddle backup describe %s --details says more)", b.Name, phase, b.Name)
	}
	return fmt.Errorf("backup %q ended %s: %s", b.Name, phase, strings.Join(reasons, "; "))
}

// liveView redraws the per-volume progress in place on a terminal.
type liveView struct {
	w io.Writer
	// size reports the terminal's columns and rows (nil or an error: no limit), read on each draw so a
	// resized window is followed.
	size  func() (width, height int, err error)
	drawn int // lines on screen from the last draw
}

func (v *liveView) show(b *v1.Backup, pvbs []v1.PodVolumeBackup, elapsed time.Duration, hint string) {
	v.draw(func(maxVolumes int) []string { return progressViewLines(b, pvbs, elapsed, maxVolumes) }, hint)
}

// draw redraws the lines that lines returns for at most maxVolumes volume lines (0: no limit), then the hint:
// the part of the live view that backups and restores share.
func (v *liveView) draw(lines func(maxVolumes int) []string, hint string) {
	width, maxVolumes := 0, 0
	if v.size != nil {
		if w, h, err := v.size(); err == nil && w > 0 && h > 0 {
			// Room for the header, the total, the hint and the line the cursor rests on.
			width, maxVolumes = w, max(h-4, 2)
		}
	}
	var sb strings.Builder
	if v.drawn > 0 {
		// Back to the first line of the last draw, and clear from there down: the volume list may shrink.
		fmt.Fprintf(&sb, "\033[%dA\r\033[J", v.drawn)
	}
	drawn := lines(maxVolumes)
	if hint != "" {
		drawn = append(drawn, hint)
	}
	for _, l := range drawn {
		sb.WriteString(fitWidth(l, width))
		sb.WriteByte('\n')
	}
	v.drawn = len(drawn)
	_, _ = io.WriteString(v.w, sb.String())
}

func (v *liveView) finish() {}

// lineView prints a line when the backup's phase changes or a volume ends, and a progress line at most
// every `every`: fit for logs, where redrawing is noise.
type lineView struct {
	w         io.Writer
	every     time.Duration
	phase     v1.Phase
	printed   bool
	lastAt    time.Duration
	volPhases map[string]v1.VolumePhase
	hinted    bool
}

func (v *lineView) show(b *v1.Backup, pvbs []v1.PodVolumeBackup, elapsed time.Duration, hint string) {
	if v.volPhases == nil {
		v.volPhases = map[string]v1.VolumePhase{}
	}
	for i := range pvbs {
		p := &pvbs[i]
		ph := volumePhaseOf(p)
		if v.volPhases[p.Name] == ph {
			continue
		}
		v.volPhases[p.Name] = ph
		switch ph {
		case v1.VolumePhaseCompleted:
			fmt.Fprintf(v.w, "volume %s on %s: Completed, %s, snapshot %s\n", volumeName(p), p.Spec.Node, bytesPair(p.Status.Progress), shortID(p.Status.SnapshotID))
		case v1.VolumePhaseFailed, v1.VolumePhaseCanceled:
			fmt.Fprintf(v.w, "volume %s on %s: %s: %s\n", volumeName(p), p.Spec.Node, ph, oneLine(p.Status.Message))
		}
	}
	phase := phaseOf(b)
	s := &b.Status
	line := fmt.Sprintf("Backup %q: %s, %s, %s", b.Name, phase, volumesText(s), bytesPair(s.Progress))
	if s.Progress.BytesTotal > 0 {
		line += " " + percent(s.Progress.BytesDone, s.Progress.BytesTotal)
	}
	if !v.printed || phase != v.phase || elapsed-v.lastAt >= v.every {
		fmt.Fprintln(v.w, line)
		v.printed, v.phase, v.lastAt = true, phase, elapsed
	}
	if hint != "" && !v.hinted {
		fmt.Fprintln(v.w, hint)
		v.hinted = true
	}
}

func (v *lineView) finish() {}
