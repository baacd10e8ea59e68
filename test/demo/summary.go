package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// summary prints the backup's volumes with their stats (from the PodVolumeBackups) and the time per phase.
func (d *demo) summary(ctx context.Context, total time.Duration) error {
	var pvbs v1.PodVolumeBackupList
	if err := d.cl.List(ctx, &pvbs, client.InNamespace(installNamespace), client.MatchingLabels{v1.BackupLabel: backupName}); err != nil {
		return fmt.Errorf("list the PodVolumeBackups of %s: %w", backupName, err)
	}
	sort.Slice(pvbs.Items, func(i, j int) bool { return pvbs.Items[i].Spec.Pod.Name < pvbs.Items[j].Spec.Pod.Name })
	d.section("Summary")
	w := tabwriter.NewWriter(d.out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "VOLUME\tNODE\tFILES\tBYTES\tNEW DATA\tSTORED\tDEDUP")
	var sum v1.VolumeStats
	for _, p := range pvbs.Items {
		s := p.Status.Stats
		row(w, p.Spec.Pod.Namespace+"/"+p.Spec.Pod.Name+"/"+p.Spec.Volume, p.Spec.Node, s)
		sum.FilesNew += s.FilesNew
		sum.FilesChanged += s.FilesChanged
		sum.FilesUnmodified += s.FilesUnmodified
		sum.BytesRead += s.BytesRead
		sum.BytesAdded += s.BytesAdded
		sum.BytesStored += s.BytesStored
	}
	row(w, fmt.Sprintf("%d volumes", len(pvbs.Items)), "", sum)
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(d.out, "# BYTES: read from the volumes; NEW DATA: after deduplication; STORED: compressed and encrypted; DEDUP: BYTES / NEW DATA")
	fmt.Fprintln(d.out)
	w = tabwriter.NewWriter(d.out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(w, "PHASE\tTIME")
	for _, p := range d.phases {
		fmt.Fprintf(w, "%s\t%.1fs\n", p.name, p.took.Seconds())
	}
	fmt.Fprintf(w, "total\t%.1fs\n", total.Seconds())
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "\n%sDemo passed:%s namespace %s backed up, deleted, restored and verified byte for byte.\n", bold(d.out), reset(d.out), votingNS)
	return nil
}

func row(w *tabwriter.Writer, name, node string, s v1.VolumeStats) {
	files := s.FilesNew + s.FilesChanged + s.FilesUnmodified
	dedup := "-"
	if s.BytesAdded > 0 {
		dedup = fmt.Sprintf("%.2fx", float64(s.BytesRead)/float64(s.BytesAdded))
	}
	fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", name, node, files, humanBytes(s.BytesRead), humanBytes(s.BytesAdded), humanBytes(s.BytesStored), dedup)
}
