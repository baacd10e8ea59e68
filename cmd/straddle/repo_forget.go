package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/forget"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/snapshot"
)

type repoForgetOptions struct {
	*repoFlags
	policy  forget.Policy
	groupBy string
	host    string
	path    string
	tags    []string
	dryRun  bool
	json    bool
}

func newRepoForgetCmd(f *repoFlags) *cobra.Command {
	o := &repoForgetOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "forget [ID...]",
		Short: "Remove snapshots by ID or by a retention policy",
		Long: "Remove snapshots named by ID (a unique prefix, or latest), or those a retention policy does not keep.\n" +
			"Each --keep-* rule keeps the newest snapshot of each of the last N hours, days, ISO weeks or months\n" +
			"(in UTC) that have snapshots; keep-last keeps the N newest. A snapshot kept by any rule is kept.\n" +
			"The policy applies to each group (--group-by) separately, and only to snapshots passing --host,\n" +
			"--path and --tag. Only the snapshot records are deleted: prune frees the data they referenced.",
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&o.policy.Last, "keep-last", 0, "keep the N newest snapshots")
	fl.IntVar(&o.policy.Hourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours with snapshots")
	fl.IntVar(&o.policy.Daily, "keep-daily", 0, "keep the newest snapshot of each of the last N days with snapshots")
	fl.IntVar(&o.policy.Weekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N ISO weeks with snapshots")
	fl.IntVar(&o.policy.Monthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months with snapshots")
	fl.StringVar(&o.groupBy, "group-by", forget.DefaultGroupBy.String(), "apply the policy to each group of snapshots sharing these fields: a comma list of host, paths, tags (empty: one group)")
	fl.StringVar(&o.host, "host", "", "consider only snapshots of this host")
	fl.StringVar(&o.path, "path", "", "consider only snapshots of this path")
	fl.StringArrayVar(&o.tags, "tag", nil, "consider only snapshots with this key=value tag (repeatable: all must match)")
	fl.BoolVar(&o.dryRun, "dry-run", false, "print what would be kept and removed, and delete nothing")
	fl.BoolVar(&o.json, "json", false, "print the plan as one JSON object")
	return cmd
}

// forgetJSON is the contract of `straddle repo forget --json`.
type forgetJSON struct {
	DryRun bool              `json:"dry_run"`
	Groups []forgetGroupJSON `json:"groups"`
}

// forgetGroupJSON is one group: its key holds only the fields grouped by (none when forgetting by ID).
type forgetGroupJSON struct {
	Key    forgetKeyJSON        `json:"group"`
	Keep   []forgetSnapshotJSON `json:"keep"`
	Remove []forgetSnapshotJSON `json:"remove"`
}

type forgetKeyJSON struct {
	Host  *string            `json:"host,omitempty"`
	Paths *[]string          `json:"paths,omitempty"`
	Tags  *map[string]string `json:"tags,omitempty"`
}

type forgetSnapshotJSON struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"`
	Host    string            `json:"host"`
	Paths   []string          `json:"paths"`
	Tags    map[string]string `json:"tags"`
	Reasons []string          `json:"reasons,omitempty"`
}

func (o *repoForgetOptions) run(ctx context.Context, ids []string, out io.Writer) error {
	if len(ids) > 0 && !o.policy.Empty() {
		return errors.New("give snapshot IDs or --keep-* rules, not both")
	}
	if len(ids) == 0 {
		err := o.policy.Validate()
		if errors.Is(err, forget.ErrEmptyPolicy) {
			return errors.New("forget needs snapshot IDs or at least one --keep-last/hourly/daily/weekly/monthly rule; it never guesses what to remove")
		}
		if err != nil {
			return err
		}
	}
	by, err := forget.ParseGroupBy(o.groupBy)
	if err != nil {
		return err
	}
	tags, err := parseTags(o.tags)
	if err != nil {
		return err
	}
	filter := repo.Filter{Host: o.host, Path: o.path, Tags: tags}
	var groups []forget.Group
	var remove []*snapshot.Snapshot
	// A shared lock: forgetting beside running backups is safe, but not while a prune deletes, whose
	// exclusive phase re-reads the snapshots it must keep.
	err = o.withLock(ctx, lock.Shared, "forget", false, func(ctx context.Context, r *repo.Repository) error {
		var err error
		if groups, err = o.plan(ctx, r, ids, filter, by); err != nil {
			return err
		}
		for _, g := range groups {
			remove = append(remove, g.Remove...)
		}
		if o.dryRun {
			return nil
		}
		return forget.Remove(ctx, r, remove)
	})
	if err != nil {
		return err
	}
	if o.json {
		return json.NewEncoder(out).Encode(o.toJSON(groups))
	}
	if len(ids) == 0 {
		grouping := "one group"
		if by != (forget.GroupBy{}) {
			grouping = "grouped by " + by.String()
		}
		fmt.Fprintf(out, "policy: %s; %s\n\n", o.policy, grouping)
	}
	return o.printTables(out, groups, len(ids) > 0, len(remove))
}

// plan resolves the IDs into one group to remove, or applies the policy to the listed snapshots.
func (o *repoForgetOptions) plan(ctx context.Context, r *repo.Repository, ids []string, f repo.Filter, by forget.GroupBy) ([]forget.Group, error) {
	if len(ids) > 0 {
		snaps, err := forget.Resolve(ctx, r, ids, f)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(snaps, func(a, b *snapshot.Snapshot) int { return a.Time.Compare(b.Time) })
		return []forget.Group{{Remove: snaps}}, nil
	}
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, err
	}
	return forget.Apply(snaps, forget.Options{Policy: o.policy, GroupBy: by, Filter: f})
}

func (o *repoForgetOptions) toJSON(groups []forget.Group) forgetJSON {
	doc := forgetJSON{DryRun: o.dryRun, Groups: make([]forgetGroupJSON, 0, len(groups))}
	for _, g := range groups {
		gj := forgetGroupJSON{Keep: []forgetSnapshotJSON{}, Remove: []forgetSnapshotJSON{}}
		if g.Key.By.Host {
			gj.Key.Host = &g.Key.Host
		}
		if g.Key.By.Paths {
			p := nonNil(g.Key.Paths)
			gj.Key.Paths = &p
		}
		if g.Key.By.Tags {
			t := nonNilMap(g.Key.Tags)
			gj.Key.Tags = &t
		}
		for _, k := range g.Keep {
			gj.Keep = append(gj.Keep, forgetSnapshot(k.Snapshot, k.Reasons))
		}
		for _, s := range g.Remove {
			gj.Remove = append(gj.Remove, forgetSnapshot(s, nil))
		}
		doc.Groups = append(doc.Groups, gj)
	}
	return doc
}

func forgetSnapshot(s *snapshot.Snapshot, reasons []string) forgetSnapshotJSON {
	return forgetSnapshotJSON{ID: s.ID.String(), Time: s.Time, Host: s.Host, Paths: nonNil(s.Paths), Tags: nonNilMap(s.Tags), Reasons: reasons}
}

// printTables prints one table per group, oldest first, each snapshot marked keep or remove, then a total.
func (o *repoForgetOptions) printTables(out io.Writer, groups []forget.Group, byID bool, removed int) error {
	kept := 0
	for i, g := range groups {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if !byID {
			title := g.Key.String()
			if title == "" {
				title = "all snapshots"
			}
			fmt.Fprintf(out, "%s: keep %d, remove %d\n", title, len(g.Keep), len(g.Remove))
		}
		type row struct {
			action  string
			s       *snapshot.Snapshot
			reasons []string
		}
		var rows []row
		for _, k := range g.Keep {
			rows = append(rows, row{"keep", k.Snapshot, k.Reasons})
		}
		for _, s := range g.Remove {
			rows = append(rows, row{"remove", s, nil})
		}
		slices.SortStableFunc(rows, func(a, b row) int { return a.s.Time.Compare(b.s.Time) })
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACTION\tID\tTIME (UTC)\tHOST\tPATH\tTAGS\tREASONS")
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.action, r.s.ID.Short(), r.s.Time.UTC().Format("2006-01-02 15:04:05"),
				r.s.Host, strings.Join(r.s.Paths, ","), formatTags(r.s.Tags), strings.Join(r.reasons, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		kept += len(g.Keep)
	}
	switch {
	case len(groups) == 0:
		fmt.Fprintln(out, "no snapshots match")
	case byID && o.dryRun:
		fmt.Fprintf(out, "dry run: would remove %d snapshots; nothing was deleted\n", removed)
	case byID:
		fmt.Fprintf(out, "removed %d snapshots; their data stays in the repository until prune\n", removed)
	case o.dryRun:
		fmt.Fprintf(out, "dry run: would remove %d snapshots and keep %d; nothing was deleted\n", removed, kept)
	case removed == 0:
		fmt.Fprintf(out, "removed no snapshots, kept %d\n", kept)
	default:
		fmt.Fprintf(out, "removed %d snapshots, kept %d; their data stays in the repository until prune\n", removed, kept)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
