package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// restoreWaitView shows a restore while `restore create --wait` waits for it.
type restoreWaitView interface {
	// show draws the restore's state; hint, when not empty, is advice on a restore that does not move.
	show(r *v1.Restore, pvrs []v1.PodVolumeRestore, elapsed time.Duration, hint string)
}

// newRestoreWaitView picks the live view on a terminal and plain lines anywhere else (pipes, CI logs).
func newRestoreWaitView(out io.Writer) restoreWaitView {
	if f, ok := out.(*os.File); ok && isTerminal(f) {
		return &restoreLiveView{live: liveView{w: out, size: func() (int, int, error) { return term.GetSize(int(f.Fd())) }}}
	}
	return &restoreLineView{w: out, every: 10 * time.Second}
}

// restoreWaiter polls a Restore and its PodVolumeRestores until the Restore ends.
type restoreWaiter struct {
	client    client.Client
	namespace string
	name      string
	clock     clock.Clock
	interval  time.Duration
	view      restoreWaitView
	// grace is how long reads may keep failing before waiting gives up (0: readErrorGrace).
	grace time.Duration
}

// wait returns nil once the restore Completed, and an error naming the phase and the failed volumes if it
// ended otherwise. Cancelling ctx (Ctrl-C) stops the waiting only; the restore goes on.
func (w *restoreWaiter) wait(ctx context.Context) error {
	p := poller{clock: w.clock, interval: w.interval, grace: w.grace, kind: "restore", name: w.name,
		gone: func(err error) bool { return errors.As(err, new(*restoreNotFoundError)) }}
	return p.poll(ctx, func(ctx context.Context, elapsed func() time.Duration) (bool, error, error) {
		r, pvrs, err := w.read(ctx)
		if err != nil {
			return false, nil, err
		}
		e := elapsed()
		w.view.show(r, pvrs, e, notPickedUpHint("restore", w.namespace, r.Status.Phase, e))
		if isTerminalPhase(restorePhaseOf(r)) {
			return true, restoreOutcome(r, pvrs), nil
		}
		if r.Status.Phase == v1.PhaseDeleting {
			return true, fmt.Errorf("restore %q is being deleted", w.name), nil
		}
		return false, nil, nil
	})
}

func (w *restoreWaiter) read(ctx context.Context) (*v1.Restore, []v1.PodVolumeRestore, error) {
	r, err := getRestore(ctx, w.client, w.namespace, w.name)
	if err != nil {
		return nil, nil, err
	}
	pvrs, err := listVolumeRestores(ctx, w.client, r)
	if err != nil {
		return nil, nil, err
	}
	return r, pvrs, nil
}

// restoreOutcome is nil for a Completed restore, else one sentence with the phase and what failed.
func restoreOutcome(r *v1.Restore, pvrs []v1.PodVolumeRestore) error {
	phase := restorePhaseOf(r)
	if phase == v1.PhaseCompleted {
		return nil
	}
	var reasons []string
	for i := range pvrs {
		p := &pvrs[i]
		if p.Status.Phase == v1.VolumePhaseFailed || p.Status.Phase == v1.VolumePhaseCanceled {
			reasons = append(reasons, fmt.Sprintf("volume %s %s: %s", restoreVolumeName(p), strings.ToLower(string(p.Status.Phase)), oneLine(p.Status.Message)))
		}
	}
	for _, e := range r.Status.Errors {
		reasons = append(reasons, oneLine(e))
	}
	if len(reasons) == 0 {
		return fmt.Errorf("restore %q ended %s (straddle restore describe %s --details says more)", r.Name, phase, r.Name)
	}
	return fmt.Errorf("restore %q ended %s: %s", r.Name, phase, strings.Join(reasons, "; "))
}

// restoreViewLines are the lines of the live view of a running restore: a header, one line per volume, then
// the total. With more volumes than maxVolumes (0: no limit), unfinished volumes come first and the rest are
// summed up in one line, as in the backup's view.
func restoreViewLines(r *v1.Restore, pvrs []v1.PodVolumeRestore, elapsed time.Duration, maxVolumes int) []string {
	shown, hidden := pvrs, 0
	if maxVolumes > 0 && len(pvrs) > maxVolumes {
		var unfinished, finished []v1.PodVolumeRestore
		for _, p := range pvrs {
			if volumeRestorePhaseOf(&p) == v1.VolumePhaseCompleted {
				finished = append(finished, p)
			} else {
				unfinished = append(unfinished, p)
			}
		}
		shown = append(unfinished, finished...)[:maxVolumes-1]
		hidden = len(pvrs) - len(shown)
	}
	var buf bytes.Buffer
	tw := newTable(&buf)
	fmt.Fprintf(tw, "Restore %q from backup %q: %s, %s, %s\n", r.Name, r.Spec.BackupName, restorePhaseOf(r), restoreVolumesText(&r.Status), formatDuration(elapsed))
	for i := range shown {
		p := &shown[i]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", restoreVolumeName(p), p.Spec.Node, volumeRestorePhaseOf(p),
			bytesPair(p.Status.Progress), percent(p.Status.Progress.BytesDone, p.Status.Progress.BytesTotal))
	}
	if hidden > 0 {
		fmt.Fprintf(tw, "  (%d more volumes)\n", hidden)
	}
	s := &r.Status
	fmt.Fprintf(tw, "  total\t\t\t%s\t%s\n", bytesPair(s.Progress), percent(s.Progress.BytesDone, s.Progress.BytesTotal))
	_ = tw.Flush()
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// restoreLiveView redraws the per-volume progress in place on a terminal, with the backup view's drawing.
type restoreLiveView struct{ live liveView }

func (v *restoreLiveView) show(r *v1.Restore, pvrs []v1.PodVolumeRestore, elapsed time.Duration, hint string) {
	v.live.draw(func(maxVolumes int) []string { return restoreViewLines(r, pvrs, elapsed, maxVolumes) }, hint)
}

// restoreLineView prints a line when the restore's phase changes or a volume ends, and a progress line at
// most every `every`: fit for logs, where redrawing is noise.
type restoreLineView struct {
	w         io.Writer
	every     time.Duration
	phase     v1.Phase
	printed   bool
	lastAt    time.Duration
	volPhases map[string]v1.VolumePhase
	hinted    bool
}

func (v *restoreLineView) show(r *v1.Restore, pvrs []v1.PodVolumeRestore, elapsed time.Duration, hint string) {
	if v.volPhases == nil {
		v.volPhases = map[string]v1.VolumePhase{}
	}
	for i := range pvrs {
		p := &pvrs[i]
		ph := volumeRestorePhaseOf(p)
		if v.volPhases[p.Name] == ph {
			continue
		}
		v.volPhases[p.Name] = ph
		switch ph {
		case v1.VolumePhaseCompleted:
			fmt.Fprintf(v.w, "volume %s on %s: Completed, %s from snapshot %s\n", restoreVolumeName(p), p.Spec.Node, bytesPair(p.Status.Progress), shortID(p.Spec.SnapshotID))
		case v1.VolumePhaseFailed, v1.VolumePhaseCanceled:
			fmt.Fprintf(v.w, "volume %s on %s: %s: %s\n", restoreVolumeName(p), p.Spec.Node, ph, oneLine(p.Status.Message))
		}
	}
	phase := restorePhaseOf(r)
	s := &r.Status
	line := fmt.Sprintf("Restore %q: %s, %s, %s", r.Name, phase, restoreVolumesText(s), bytesPair(s.Progress))
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
