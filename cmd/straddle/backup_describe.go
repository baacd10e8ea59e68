package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller"
	"github.com/straddle-io/straddle/controller/bsl"
)

// backupDescribeOptions are the flags of `straddle backup describe`.
type backupDescribeOptions struct {
	*backupFlags
	details bool
}

func newBackupDescribeCmd(f *backupFlags) *cobra.Command {
	o := &backupDescribeOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "describe NAME",
		Short: "Show a backup: its settings, progress, volumes, skipped volumes and resources",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.details, "details", false, "also each volume's stats, warnings and full snapshot ID, and how to restore it without the cluster")
	return cmd
}

// backupView is everything describe shows about one backup.
type backupView struct {
	backup *v1.Backup
	pvbs   []v1.PodVolumeBackup
	// location is the backup's storage location, nil if it cannot be found.
	location *v1.BackupStorageLocation
}

func (o *backupDescribeOptions) run(ctx context.Context, name string, out io.Writer) error {
	cl, err := o.client()
	if err != nil {
		return err
	}
	b, err := getBackup(ctx, cl, o.namespace, name)
	if err != nil {
		return err
	}
	pvbs, err := listVolumeBackups(ctx, cl, b)
	if err != nil {
		return err
	}
	loc, err := backupLocation(ctx, cl, b)
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, describeBackup(backupView{backup: b, pvbs: pvbs, location: loc}, o.details, time.Now()))
	return err
}

// backupLocation finds the storage location a backup names, or the default one; nil when there is none.
func backupLocation(ctx context.Context, cl client.Client, b *v1.Backup) (*v1.BackupStorageLocation, error) {
	if name := b.Spec.StorageLocation; name != "" {
		var loc v1.BackupStorageLocation
		err := cl.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: name}, &loc)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read storage location %s/%s: %w", b.Namespace, name, err)
		}
		return &loc, nil
	}
	var list v1.BackupStorageLocationList
	if err := cl.List(ctx, &list, client.InNamespace(b.Namespace)); err != nil {
		return nil, fmt.Errorf("list storage locations in namespace %s: %w", b.Namespace, err)
	}
	for i := range list.Items {
		if list.Items[i].Spec.Default {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// describeBackup renders describe's text; now makes relative times testable.
func describeBackup(v backupView, details bool, now time.Time) string {
	b, s := v.backup, &v.backup.Status
	var buf bytes.Buffer
	tw := newTable(&buf)
	field := func(k, val string) { fmt.Fprintf(tw, "%s:\t%s\n", k, val) }
	field("Name", b.Name)
	field("Namespace", b.Namespace)
	field("Phase", string(phaseOf(b)))
	field("Storage location", locationText(b, v.location))
	if from, ok := b.Annotations[v1.SyncedFromAnnotation]; ok {
		// Another cluster ran it; this one only found it in storage and can restore it.
		field("Origin", "Synced from storage location "+from)
	}
	field("Namespaces", namespacesText(&b.Spec))
	field("Selector", selectorText(b.Spec.LabelSelector))
	field("Default volumes to fs backup", defaultVolumesText(b.Spec.DefaultVolumesToFsBackup))
	ttl := "720h0m0s (default)"
	if b.Spec.TTL != nil {
		ttl = b.Spec.TTL.Duration.String()
	}
	field("TTL", ttl)
	field("Timeout", timeoutText(b.Spec.Timeout, s.Conditions))
	field("Expires", timestamp(s.Expiration, now))
	field("Started", timestamp(s.StartTimestamp, now))
	field("Completed", timestamp(s.CompletionTimestamp, now))
	field("Volumes", volumesText(s)+fmt.Sprintf(", %d skipped", len(s.SkippedVolumes)))
	field("Bytes", progressOf(s.Progress))
	if s.Progress.FilesTotal > 0 || s.Progress.FilesDone > 0 {
		field("Files", fmt.Sprintf("%d/%d", s.Progress.FilesDone, s.Progress.FilesTotal))
	}
	_ = tw.Flush()
	bulletList(&buf, "Errors", s.Errors)
	bulletList(&buf, "Warnings", s.Warnings)

	fmt.Fprintf(&buf, "\nVolumes (%d):\n", len(v.pvbs))
	if len(v.pvbs) == 0 {
		fmt.Fprintln(&buf, "  none yet")
	} else {
		tw = newTable(&buf)
		fmt.Fprintln(tw, "  POD\tVOLUME\tNODE\tPHASE\tPROGRESS\tSNAPSHOT\tMESSAGE")
		for i := range v.pvbs {
			p := &v.pvbs[i]
			fmt.Fprintf(tw, "  %s/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Spec.Pod.Namespace, p.Spec.Pod.Name, p.Spec.Volume, p.Spec.Node,
				volumePhaseOf(p), progressOf(p.Status.Progress), shortID(p.Status.SnapshotID), oneLine(p.Status.Message))
		}
		_ = tw.Flush()
	}

	if len(s.SkippedVolumes) > 0 {
		fmt.Fprintf(&buf, "\nSkipped volumes (%d):\n", len(s.SkippedVolumes))
		tw = newTable(&buf)
		fmt.Fprintln(tw, "  POD\tVOLUME\tREASON")
		for _, sv := range s.SkippedVolumes {
			vol := sv.Volume
			if vol == "" {
				vol = "(all)" // the whole pod was skipped, such as one that is not Running
			}
			fmt.Fprintf(tw, "  %s/%s\t%s\t%s\n", sv.Namespace, sv.Pod, vol, oneLine(sv.Reason))
		}
		_ = tw.Flush()
	}

	describeHooks(&buf, s.Hooks)

	if len(s.Resources) > 0 {
		total := 0
		tw = newTable(&buf)
		for _, r := range s.Resources {
			total += r.Count
		}
		fmt.Fprintf(&buf, "\nResources (%d objects):\n", total)
		for _, r := range s.Resources {
			fmt.Fprintf(tw, "  %s\t%d\n", r.Resource, r.Count)
		}
		_ = tw.Flush()
	}

	if details {
		describeDetails(&buf, v)
	} else if len(v.pvbs) > 0 {
		fmt.Fprintf(&buf, "\nstraddle backup describe %s --details shows each volume's stats, full snapshot IDs and how to restore without the cluster.\n", b.Name)
	}
	return buf.String()
}

// describeDetails adds each volume's stats, warnings and full snapshot ID, and the repo flags that reach
// its repository with `straddle repo`, which needs no cluster.
func describeDetails(buf *bytes.Buffer, v backupView) {
	for i := range v.pvbs {
		p := &v.pvbs[i]
		st := &p.Status.Stats
		fmt.Fprintf(buf, "\nVolume %s:\n", volumeName(p))
		tw := newTable(buf)
		field := func(k, val string) { fmt.Fprintf(tw, "  %s:\t%s\n", k, val) }
		field("Node", p.Spec.Node)
		field("Phase", string(volumePhaseOf(p)))
		if p.Spec.PVC != "" {
			field("PVC", p.Spec.PVC)
		}
		field("Snapshot", orNone(p.Status.SnapshotID))
		field("Parent snapshot", orNone(p.Spec.ParentSnapshotID))
		field("Files", fmt.Sprintf("%d new, %d changed, %d unmodified", st.FilesNew, st.FilesChanged, st.FilesUnmodified))
		field("Bytes", fmt.Sprintf("%s read, %s added, %s stored", bytesOf(st.BytesRead), bytesOf(st.BytesAdded), bytesOf(st.BytesStored)))
		if len(p.Spec.ExcludePatterns) > 0 {
			field("Excluded", strings.Join(p.Spec.ExcludePatterns, ", "))
		}
		if p.Status.Message != "" {
			field("Message", oneLine(p.Status.Message))
		}
		_ = tw.Flush()
		for _, w := range p.Status.Warnings {
			fmt.Fprintf(buf, "  warning: %s\n", oneLine(w))
		}
	}
	restoreHint(buf, v)
}

// restoreHint prints the commands that restore each volume's snapshot with `straddle repo restore`, which
// needs no cluster: the password from the location's Secret, then one restore per volume.
func restoreHint(buf *bytes.Buffer, v backupView) {
	fmt.Fprintln(buf, "\nRestore without the cluster:")
	loc := v.location
	if loc == nil {
		fmt.Fprintln(buf, "  the storage location is not found, so its repositories cannot be named")
		return
	}
	if sel := loc.Spec.RepositoryPasswordSecret; sel != nil {
		key := sel.Key
		if key == "" {
			key = "password"
		}
		fmt.Fprintf(buf, "  kubectl -n %s get secret %s -o jsonpath='{.data.%s}' | base64 -d > repository-password\n", loc.Namespace, sel.Name, key)
	}
	if s3 := loc.Spec.S3; s3 != nil && s3.CredentialsSecret != nil {
		fmt.Fprintf(buf, "  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   # from Secret %s/%s, key %s\n", loc.Namespace, s3.CredentialsSecret.Name, s3.CredentialsSecret.Key)
	}
	restores := 0
	for i := range v.pvbs {
		p := &v.pvbs[i]
		if p.Status.SnapshotID == "" {
			continue
		}
		restores++
		fmt.Fprintf(buf, "  straddle repo restore %s %s --password-file repository-password --target restore/%s\n",
			p.Status.SnapshotID, repositoryFlags(loc, p.Spec.Pod.Namespace), volumeName(p))
	}
	if restores == 0 {
		fmt.Fprintf(buf, "  no volume has a snapshot; the repository of namespace NS is %s\n", repositoryFlags(loc, "NS"))
	}
}

// repositoryFlags are the `straddle repo` flags that open the repository of a namespace's volumes in a
// location (contract: repositories/<namespace> inside the location, see controller/bsl).
func repositoryFlags(loc *v1.BackupStorageLocation, namespace string) string {
	sub := bsl.RepositoryPath(namespace)
	switch {
	case loc.Spec.Provider == "s3" && loc.Spec.S3 != nil:
		s3 := loc.Spec.S3
		host, plainHTTP, err := v1.ParseS3Endpoint(s3.Endpoint)
		if err != nil {
			return fmt.Sprintf("(storage location %s has an unusable endpoint %q)", loc.Name, s3.Endpoint)
		}
		scheme := "s3"
		if plainHTTP {
			scheme = "s3+http"
		}
		flags := fmt.Sprintf("--repo %s://%s/%s", scheme, host, path.Join(s3.Bucket, s3.Prefix, sub))
		if s3.ForcePathStyle {
			flags += " --s3-bucket-lookup path"
		}
		if s3.Region != "" {
			flags += " --region " + s3.Region
		}
		return flags
	case loc.Spec.Provider == "filesystem" && loc.Spec.Filesystem != nil:
		return "--repo " + path.Join(loc.Spec.Filesystem.Path, sub)
	}
	return fmt.Sprintf("(storage location %s has no usable %s section)", loc.Name, loc.Spec.Provider)
}

func bulletList(buf *bytes.Buffer, title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Fprintf(buf, "%s:\n", title)
	for _, it := range items {
		fmt.Fprintf(buf, "  - %s\n", oneLine(it))
	}
}

func orNone(s string) string {
	if s == "" {
		return none
	}
	return s
}

func locationText(b *v1.Backup, loc *v1.BackupStorageLocation) string {
	if loc == nil {
		if b.Spec.StorageLocation == "" {
			return "the default (none is marked default)"
		}
		return b.Spec.StorageLocation + " (not found)"
	}
	text := loc.Name
	switch {
	case loc.Spec.S3 != nil:
		text += fmt.Sprintf(" (s3 %s, bucket %s", loc.Spec.S3.Endpoint, loc.Spec.S3.Bucket)
		if loc.Spec.S3.Prefix != "" {
			text += ", prefix " + loc.Spec.S3.Prefix
		}
		text += ")"
	case loc.Spec.Filesystem != nil:
		text += " (filesystem " + loc.Spec.Filesystem.Path + ")"
	}
	if loc.Status.Phase != "" {
		text += ", " + string(loc.Status.Phase)
	}
	return text
}

func namespacesText(spec *v1.BackupSpec) string {
	inc := "all"
	if len(spec.IncludedNamespaces) > 0 {
		inc = strings.Join(spec.IncludedNamespaces, ", ")
	}
	if len(spec.ExcludedNamespaces) > 0 {
		return inc + "; excluding " + strings.Join(spec.ExcludedNamespaces, ", ")
	}
	return inc
}

func selectorText(sel *metav1.LabelSelector) string {
	if sel == nil {
		return "every pod"
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return fmt.Sprintf("%v (invalid: %v)", sel, err)
	}
	if s.Empty() {
		return "every pod"
	}
	return s.String()
}

// timeoutText says what bounds a Backup or Restore, and whether it ran out of time.
func timeoutText(spec *metav1.Duration, conds []metav1.Condition) string {
	s := "the install's default"
	switch {
	case spec != nil && spec.Duration <= 0:
		s = "none"
	case spec != nil:
		s = controller.ShortDuration(spec.Duration)
	}
	if c := meta.FindStatusCondition(conds, controller.ConditionTimedOut); c != nil && c.Status == metav1.ConditionTrue {
		s += "; " + c.Message + ": the unfinished volumes failed, the finished ones were kept"
	}
	return s
}

func defaultVolumesText(v *bool) string {
	switch {
	case v == nil:
		return "the install's default"
	case *v:
		return "yes (every volume not excluded by annotation)"
	}
	return "no (only volumes named by annotation)"
}
