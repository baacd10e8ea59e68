package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo/snapshot"
)

type repoSnapshotsOptions struct {
	*repoFlags
	json bool
}

func newRepoSnapshotsCmd(f *repoFlags) *cobra.Command {
	o := &repoSnapshotsOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List snapshots, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&o.json, "json", false, "print a JSON array")
	return cmd
}

// snapshotJSON is the contract of `straddle repo snapshots --json`.
type snapshotJSON struct {
	ID     string            `json:"id"`
	Time   time.Time         `json:"time"`
	Host   string            `json:"host"`
	Paths  []string          `json:"paths"`
	Tags   map[string]string `json:"tags"`
	Parent string            `json:"parent,omitempty"`
	Tree   string            `json:"tree"`
	// Excludes are the patterns the backup left out, when it had any.
	Excludes []string          `json:"excludes,omitempty"`
	Summary  *snapshot.Summary `json:"summary,omitempty"`
}

func (o *repoSnapshotsOptions) run(ctx context.Context, out io.Writer) error {
	r, err := o.open(ctx, false)
	if err != nil {
		return err
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return err
	}
	if o.json {
		docs := make([]snapshotJSON, 0, len(snaps))
		for _, s := range snaps {
			d := snapshotJSON{ID: s.ID.String(), Time: s.Time, Host: s.Host, Paths: s.Paths, Tags: s.Tags, Tree: s.Tree.String(), Excludes: s.Excludes, Summary: s.Summary}
			if d.Tags == nil {
				d.Tags = map[string]string{}
			}
			if s.Parent != nil {
				d.Parent = s.Parent.String()
			}
			docs = append(docs, d)
		}
		return json.NewEncoder(out).Encode(docs)
	}
	// The EXCLUDES column appears only when some snapshot left paths out, so the usual table stays narrow.
	withExcludes := slices.ContainsFunc(snaps, func(s *snapshot.Snapshot) bool { return len(s.Excludes) > 0 })
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := "ID\tTIME\tHOST\tPATH\tSIZE\tTAGS"
	if withExcludes {
		header += "\tEXCLUDES"
	}
	fmt.Fprintln(tw, header)
	for _, s := range snaps {
		size := ""
		if s.Summary != nil {
			size = humanBytes(s.Summary.BytesTotal)
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", s.ID.Short(), s.Time.Local().Format("2006-01-02 15:04:05"), s.Host, strings.Join(s.Paths, ","), size, formatTags(s.Tags))
		if withExcludes {
			row += "\t" + strings.Join(s.Excludes, ",")
		}
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d snapshots\n", len(snaps))
	return nil
}

func formatTags(tags map[string]string) string {
	var parts []string
	for k, v := range tags {
		parts = append(parts, k+"="+v)
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
