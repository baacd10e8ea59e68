package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/bsl"
)

// restoreDescribeOptions are the flags of `straddle restore describe`.
type restoreDescribeOptions struct {
	*backupFlags
	details bool
}

func newRestoreDescribeCmd(f *backupFlags) *cobra.Command {
	o := &restoreDescribeOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a restore: its backup, namespaces, progress, volumes, and the resources it restored or skipped",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.details, "details", false, "also each volume's start and completion times and full snapshot ID")
	return cmd
}

func (o *restoreDescribeOptions) run(ctx context.Context, name string, out io.Writer) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	r, err := getRestore(ctx, cl, o.namespace, name)
	if err != nil {
		return err
	}
	pvrs, err := listVolumeRestores(ctx, cl, r)
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, describeRestore(r, pvrs, o.details, time.Now()))
	return err
}

// describeRestore renders describe's text; now makes relative times testable.
func describeRestore(r *v1.Restore, pvrs []v1.PodVolumeRestore, details bool, now time.Time) string {
	s := &r.Status
	var buf bytes.Buffer
	tw := newTable(&buf)
	field := func(k, val string) { fmt.Fprintf(tw, "%s:\t%s\n", k, val) }
	field("Name", r.Name)
	field("Namespace", r.Namespace)
	field("Phase", string(restorePhaseOf(r)))
	field("Backup", r.Spec.BackupName)
	field("Namespaces", namespacesText(&v1.BackupSpec{IncludedNamespaces: r.Spec.IncludedNamespaces, ExcludedNamespaces: r.Spec.ExcludedNamespaces}))
	field("Namespace mapping", mappingText(r.Spec.NamespaceMapping))
	field("Timeout", timeoutText(r.Spec.Timeout, s.Conditions))
	field("Started", timestamp(s.StartTimestamp, now))
	field("Completed", timestamp(s.CompletionTimestamp, now))
	field("Volumes", restoreVolumesText(s))
	field("Bytes", progressOf(s.Progress))
	if s.Progress.FilesTotal > 0 || s.Progress.FilesDone > 0 {
		field("Files", fmt.Sprintf("%d/%d", s.Progress.FilesDone, s.Progress.FilesTotal))
	}
	_ = tw.Flush()
	bulletList(&buf, "Errors", s.Errors)
	bulletList(&buf, "Warnings", s.Warnings)

	if len(s.Resources) > 0 {
		total := 0
		for _, c := range s.Resources {
			total += c.Count
		}
		fmt.Fprintf(&buf, "\nResources restored (%d objects):\n", total)
		tw = newTable(&buf)
		for _, c := range s.Resources {
			fmt.Fprintf(tw, "  %s\t%d\n", c.Resource, c.Count)
		}
		_ = tw.Flush()
	}

	if len(s.SkippedResources) > 0 {
		fmt.Fprintf(&buf, "\nSkipped resources (%d):\n", len(s.SkippedResources))
		tw = newTable(&buf)
		fmt.Fprintln(tw, "  RESOURCE\tNAME\tREASON")
		for _, sr := range s.SkippedResources {
			name := sr.Name
			if sr.Namespace != "" {
				name = sr.Namespace + "/" + sr.Name
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", sr.Resource, name, oneLine(sr.Reason))
		}
		_ = tw.Flush()
	}

	fmt.Fprintf(&buf, "\nVolumes (%d):\n", len(pvrs))
	if len(pvrs) == 0 {
		// The controller makes a volume's PodVolumeRestore only once its restored pod has a node.
		fmt.Fprintln(&buf, "  none yet")
	} else {
		tw = newTable(&buf)
		fmt.Fprintln(tw, "  POD\tVOLUME\tNODE\tPHASE\tPROGRESS\tSNAPSHOT\tMESSAGE")
		for i := range pvrs {
			p := &pvrs[i]
			fmt.Fprintf(tw, "  %s/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume, orNone(p.Spec.Node),
				volumeRestorePhaseOf(p), progressOf(p.Status.Progress), shortID(p.Spec.SnapshotID), oneLine(p.Status.Message))
		}
		_ = tw.Flush()
	}

	if details {
		describeRestoreDetails(&buf, pvrs, now)
	} else if len(pvrs) > 0 {
		fmt.Fprintf(&buf, "\nstraddle restore describe %s --details shows each volume's times and full snapshot ID.\n", r.Name)
	}
	return buf.String()
}

// describeRestoreDetails adds each volume's times, where its data came from and the full snapshot ID, which
// `straddle repo restore` takes to restore the volume again without the cluster.
func describeRestoreDetails(buf *bytes.Buffer, pvrs []v1.PodVolumeRestore, now time.Time) {
	for i := range pvrs {
		p := &pvrs[i]
		fmt.Fprintf(buf, "\nVolume %s:\n", restoreVolumeName(p))
		tw := newTable(buf)
		field := func(k, val string) { fmt.Fprintf(tw, "  %s:\t%s\n", k, val) }
		field("Node", orNone(p.Spec.Node))
		field("Phase", string(volumeRestorePhaseOf(p)))
		field("Snapshot", orNone(p.Spec.SnapshotID))
		if p.Spec.SourceNamespace != "" {
			field("From namespace", p.Spec.SourceNamespace+" (repository "+bsl.RepositoryPath(p.Spec.SourceNamespace)+" in the location)")
		}
		field("Storage location", orNone(p.Spec.StorageLocation))
		field("Started", timestamp(p.Status.StartTimestamp, now))
		field("Completed", timestamp(p.Status.CompletionTimestamp, now))
		field("Progress", progressOf(p.Status.Progress))
		if p.Status.Progress.FilesTotal > 0 || p.Status.Progress.FilesDone > 0 {
			field("Files", fmt.Sprintf("%d/%d", p.Status.Progress.FilesDone, p.Status.Progress.FilesTotal))
		}
		if p.Status.Message != "" {
			field("Message", oneLine(p.Status.Message))
		}
		_ = tw.Flush()
	}
}

// mappingText prints a namespace mapping as "a -> b, c -> d", sorted by source so it reads the same each time.
func mappingText(m map[string]string) string {
	if len(m) == 0 {
		return "none (namespaces keep their names)"
	}
	srcs := make([]string, 0, len(m))
	for src := range m {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	pairs := make([]string, len(srcs))
	for i, src := range srcs {
		pairs[i] = src + " -> " + m[src]
	}
	return strings.Join(pairs, ", ")
}
