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

// restoreGetOptions are the flags of `straddle restore get`.
type restoreGetOptions struct {
	*backupFlags
	output string
}

func newRestoreGetCmd(f *backupFlags) *cobra.Command {
	o := &restoreGetOptions{backupFlags: f}
	cmd := &cobra.Command{
		Use:   "get [NAME]",
		Short: "List restores, or show one, as a table (or -o json|yaml)",
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

func (o *restoreGetOptions) run(ctx context.Context, name string, out io.Writer) error {
	if o.output != "" && o.output != "json" && o.output != "yaml" {
		return fmt.Errorf("-o %s: want json or yaml (or nothing, for a table)", o.output)
	}
	cl, err := o.client()
	if err != nil {
		return err
	}
	var restores []v1.Restore
	var obj runtime.Object
	if name != "" {
		r, err := getRestore(ctx, cl, o.namespace, name)
		if err != nil {
			return err
		}
		r.SetGroupVersionKind(v1.GroupVersion.WithKind("Restore"))
		restores, obj = []v1.Restore{*r}, r
	} else {
		var list v1.RestoreList
		if err := cl.List(ctx, &list, client.InNamespace(o.namespace)); err != nil {
			return fmt.Errorf("list restores in namespace %s: %w", o.namespace, installHint(err))
		}
		sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
		for i := range list.Items {
			list.Items[i].SetGroupVersionKind(v1.GroupVersion.WithKind("Restore"))
		}
		list.SetGroupVersionKind(v1.GroupVersion.WithKind("RestoreList"))
		restores, obj = list.Items, &list
	}
	switch o.output {
	case "json":
		b, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			return fmt.Errorf("print json: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(obj)
		if err != nil {
			return fmt.Errorf("print yaml: %w", err)
		}
		_, err = out.Write(b)
		return err
	}
	if len(restores) == 0 {
		_, err := fmt.Fprintf(out, "No restores in namespace %s.\n", o.namespace)
		return err
	}
	_, err = io.WriteString(out, restoreTable(restores, time.Now()))
	return err
}

// restoreTable is the table of `restore get`: NAME, BACKUP, PHASE, VOLUMES, STARTED, COMPLETED.
func restoreTable(restores []v1.Restore, now time.Time) string {
	var buf bytes.Buffer
	tw := newTable(&buf)
	fmt.Fprintln(tw, "NAME\tBACKUP\tPHASE\tVOLUMES\tSTARTED\tCOMPLETED")
	for i := range restores {
		r := &restores[i]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Spec.BackupName, restorePhaseOf(r), restoreVolumesCell(&r.Status),
			ago(r.Status.StartTimestamp, now), ago(r.Status.CompletionTimestamp, now))
	}
	_ = tw.Flush()
	return buf.String()
}
