package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// backupGetOptions are the flags of `straddle backup get`.
type backupGetOptions struct {
	*backupFlags
	output string
}

func newBackupGetCmd(f *backupFlags) *cobra.Command {
	o := &backupGetOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List backups, or show one, as a table (or -o json|yaml)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return o.run(cmd.Context(), name, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "print json or yaml instead of a table")
	return cmd
}

func (o *backupGetOptions) run(ctx context.Context, name string, out io.Writer) error {
	if err := checkOutputFormat(o.output); err != nil {
		return err
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	var backups []v1.Backup
	var obj runtime.Object
	if name != "" {
		b, err := getBackup(ctx, cl, o.namespace, name)
		if err != nil {
			return err
		}
		b.SetGroupVersionKind(v1.GroupVersion.WithKind("Backup"))
		backups, obj = []v1.Backup{*b}, b
	} else {
		var list v1.BackupList
		if err := cl.List(ctx, &list, client.InNamespace(o.namespace)); err != nil {
			return fmt.Errorf("list backups in namespace %s: %w", o.namespace, installHint(err))
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
		for i := range list.Items {
			list.Items[i].SetGroupVersionKind(v1.GroupVersion.WithKind("Backup"))
		}
		list.SetGroupVersionKind(v1.GroupVersion.WithKind("BackupList"))
		backups, obj = list.Items, &list
	}
	if o.output != "" {
		return printObject(out, obj, o.output)
	}
	if len(backups) == 0 {
		_, err := fmt.Fprintf(out, "No backups in namespace %s.\n", o.namespace)
		return err
	}
	_, err = io.WriteString(out, backupTable(backups, time.Now()))
	return err
}

// backupTable is the table of `backup get`: NAME, PHASE, VOLUMES, BYTES, STARTED, EXPIRES.
func backupTable(backups []v1.Backup, now time.Time) string {
	var buf bytes.Buffer
	tw := newTable(&buf)
	fmt.Fprintln(tw, "NAME\tPHASE\tVOLUMES\tBYTES\tSTARTED\tEXPIRES")
	for i := range backups {
		b := &backups[i]
		bytesCell := bytesOf(b.Status.Progress.BytesDone)
		if phaseOf(b) == v1.PhaseInProgress {
			bytesCell = bytesPair(b.Status.Progress)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, phaseOf(b), volumesCell(&b.Status), bytesCell,
			ago(b.Status.StartTimestamp, now), until(b.Status.Expiration, now))
	}
	_ = tw.Flush()
	return buf.String()
}

// checkOutputFormat accepts what -o of the get commands takes: json, yaml, or nothing (a table).
func checkOutputFormat(format string) error {
	if format != "" && format != "json" && format != "yaml" {
		return fmt.Errorf("-o %s: want json or yaml (or nothing, for a table)", format)
	}
	return nil
}

// printObject prints obj as indented json or as yaml, as kubectl -o does.
func printObject(out io.Writer, obj runtime.Object, format string) error {
	if format == "json" {
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			return fmt.Errorf("print json: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		return fmt.Errorf("print yaml: %w", err)
	}
	_, err = out.Write(b)
	return err
}
