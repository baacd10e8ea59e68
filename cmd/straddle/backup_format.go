package main

import (
	"bytes"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// none is what a table cell shows for a value not known (yet).
const none = "-"

// newTable aligns columns as kubectl does: two spaces between them.
func newTable(w *bytes.Buffer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// bytesOf prints a byte count from the API (int64, never negative in practice) in binary units.
func bytesOf(n int64) string {
	return humanBytes(uint64(max(n, 0)))
}

// progressOf prints bytes done of the total known so far, with the percentage when a total is known.
func progressOf(p v1.Progress) string {
	if p.BytesTotal <= 0 {
		return bytesOf(p.BytesDone)
	}
	return fmt.Sprintf("%s/%s %s", bytesOf(p.BytesDone), bytesOf(p.BytesTotal), percent(p.BytesDone, p.BytesTotal))
}

// percent is done of total, rounded down so 100% means really done, and at most 100% since totals may lag.
func percent(done, total int64) string {
	if total <= 0 {
		return none
	}
	return fmt.Sprintf("%d%%", min(max(done, 0)*100/total, 100))
}

// ago prints how long ago t was, kubectl style ("5m", "29d"); future times (clock skew) read as "0s".
func ago(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	return duration.HumanDuration(max(now.Sub(t.Time), 0)) + " ago"
}

// until prints how long until t, kubectl style ("29d"), or "expired" once it is past.
func until(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	d := t.Sub(now)
	if d <= 0 {
		return "expired"
	}
	return duration.HumanDuration(d)
}

// timestamp prints an absolute time with how long ago (or until) it is, for describe.
func timestamp(t *metav1.Time, now time.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	abs := t.UTC().Format("2006-01-02 15:04:05 MST")
	if t.After(now) {
		return abs + " (in " + until(t, now) + ")"
	}
	return abs + " (" + ago(t, now) + ")"
}

// phaseOf reads a Backup's phase; a Backup the controller has not seen yet has none and is New.
func phaseOf(b *v1.Backup) v1.Phase {
	if b.Status.Phase == "" {
		return v1.PhaseNew
	}
	return b.Status.Phase
}

func volumePhaseOf(p *v1.PodVolumeBackup) v1.VolumePhase {
	if p.Status.Phase == "" {
		return v1.VolumePhaseNew
	}
	return p.Status.Phase
}

// volumesCell is "done/total", with the failed ones named when there are any.
func volumesCell(s *v1.BackupStatus) string {
	cell := fmt.Sprintf("%d/%d", s.VolumesCompleted, s.VolumesTotal)
	if s.VolumesFailed > 0 {
		cell += fmt.Sprintf(" (%d failed)", s.VolumesFailed)
	}
	return cell
}

// volumesText says the same as volumesCell in words, for headers and log lines.
func volumesText(s *v1.BackupStatus) string {
	text := fmt.Sprintf("%d/%d volumes done", s.VolumesCompleted, s.VolumesTotal)
	if s.VolumesFailed > 0 {
		text += fmt.Sprintf(", %d failed", s.VolumesFailed)
	}
	return text
}

// isTerminalPhase says whether a Backup has finished, for good or ill.
func isTerminalPhase(p v1.Phase) bool {
	return p == v1.PhaseCompleted || p == v1.PhasePartiallyFailed || p == v1.PhaseFailed
}

// shortID is the first 8 characters of a snapshot ID, enough to tell snapshots apart in a table (the
// repo commands take the full ID, which describe --details prints).
func shortID(id string) string {
	if id == "" {
		return none
	}
	return id[:min(len(id), 8)]
}

// oneLine keeps a cell on one line: messages from servers may hold newlines and tabs that break a table.
func oneLine(s string) string {
	if s == "" {
		return none
	}
	return strings.Join(strings.Fields(s), " ")
}

// progressViewLines are the lines of the live view of a running backup: a header, one line per volume, then
// the total. With more volumes than maxVolumes (what fits the screen; 0 means no limit), unfinished volumes
// are shown first and the rest summed up in one line, since a redraw cannot reach lines scrolled off screen.
func progressViewLines(b *v1.Backup, pvbs []v1.PodVolumeBackup, elapsed time.Duration, maxVolumes int) []string {
	shown, hidden := pvbs, 0
	if maxVolumes > 0 && len(pvbs) > maxVolumes {
		var unfinished, finished []v1.PodVolumeBackup
		for _, p := range pvbs {
			if volumePhaseOf(&p) == v1.VolumePhaseCompleted {
				finished = append(finished, p)
			} else {
				unfinished = append(unfinished, p)
			}
		}
		shown = append(unfinished, finished...)[:maxVolumes-1]
		hidden = len(pvbs) - len(shown)
	}
	var buf bytes.Buffer
	tw := newTable(&buf)
	fmt.Fprintf(tw, "Backup %q: %s, %s, %s\n", b.Name, phaseOf(b), volumesText(&b.Status), formatDuration(elapsed))
	for i := range shown {
		p := &shown[i]
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", volumeName(p), p.Spec.Node, volumePhaseOf(p),
			bytesPair(p.Status.Progress), percent(p.Status.Progress.BytesDone, p.Status.Progress.BytesTotal))
	}
	if hidden > 0 {
		fmt.Fprintf(tw, "  (%d more volumes)\n", hidden)
	}
	s := &b.Status
	fmt.Fprintf(tw, "  total\t\t\t%s\t%s\n", bytesPair(s.Progress), percent(s.Progress.BytesDone, s.Progress.BytesTotal))
	_ = tw.Flush()
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
}

// fitWidth cuts a line to width columns (0: no limit), so no line wraps: a wrapped line would throw off the
// count of lines a redraw moves up over.
func fitWidth(line string, width int) string {
	if width <= 0 {
		return line
	}
	r := []rune(line)
	if len(r) < width {
		return line
	}
	return string(r[:width-1])
}

// bytesPair is "done/total", or only done while no total is known.
func bytesPair(p v1.Progress) string {
	if p.BytesTotal <= 0 {
		return bytesOf(p.BytesDone)
	}
	return bytesOf(p.BytesDone) + "/" + bytesOf(p.BytesTotal)
}
