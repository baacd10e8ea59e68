// Package forget removes snapshots, named by ID or chosen by a retention policy. Apply, the policy, is pure:
// it reads snapshot metadata and returns a plan. Resolve and Remove work on a repository. Removing a snapshot
// deletes only its snapshots/<id> object; prune frees the data no snapshot references any more.
//
// The rules follow restic's: for each rule, walk a group's snapshots newest first and keep the newest
// snapshot of each distinct hour, day, ISO week or month until the rule has kept N of them; keep-last keeps
// the N newest. A snapshot kept by any rule is kept, with every rule that kept it as a reason. Buckets are
// taken from the snapshot's time in UTC, so the same repository gives the same plan on every machine, and a
// daylight saving change cannot merge or split a day. The plan depends only on the snapshots: no rule is
// relative to the current time, so there is no clock to inject.
package forget

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
)

// ErrEmptyPolicy means a policy has no rule. Such a policy would keep everything; it is refused so that a
// forgotten flag is an error rather than a run that silently does nothing (or, in a careless caller,
// everything).
var ErrEmptyPolicy = errors.New("the policy has no keep rule")

// Policy says how many snapshots each rule keeps per group; zero turns a rule off.
type Policy struct {
	Last    int
	Hourly  int
	Daily   int
	Weekly  int
	Monthly int
}

// Reasons a snapshot is kept, one per rule.
const (
	ReasonLast    = "last"
	ReasonHourly  = "hourly"
	ReasonDaily   = "daily"
	ReasonWeekly  = "weekly"
	ReasonMonthly = "monthly"
)

// rule is one keep-* rule: how many buckets it keeps and which bucket a time falls in.
type rule struct {
	reason string
	n      int
	bucket func(t time.Time) int64
}

// rules lists the policy's rules in the order reasons are reported.
func (p Policy) rules() []rule {
	return []rule{
		// Every snapshot is its own bucket: its position in the newest-first order is unique.
		{ReasonLast, p.Last, nil},
		{ReasonHourly, p.Hourly, func(t time.Time) int64 {
			t = t.UTC()
			return int64(t.Year())*1_000_000 + int64(t.YearDay())*100 + int64(t.Hour())
		}},
		{ReasonDaily, p.Daily, func(t time.Time) int64 {
			t = t.UTC()
			return int64(t.Year())*1000 + int64(t.YearDay())
		}},
		{ReasonWeekly, p.Weekly, func(t time.Time) int64 {
			year, week := t.UTC().ISOWeek()
			return int64(year)*100 + int64(week)
		}},
		{ReasonMonthly, p.Monthly, func(t time.Time) int64 {
			t = t.UTC()
			return int64(t.Year())*100 + int64(t.Month())
		}},
	}
}

// Empty reports whether the policy has no rule.
func (p Policy) Empty() bool { return p == Policy{} }

// Validate rejects negative counts and the empty policy.
func (p Policy) Validate() error {
	for _, r := range p.rules() {
		if r.n < 0 {
			return fmt.Errorf("keep-%s %d: a count cannot be negative", r.reason, r.n)
		}
	}
	if p.Empty() {
		return ErrEmptyPolicy
	}
	return nil
}

// String lists the active rules, as in "keep-last 3, keep-daily 7".
func (p Policy) String() string {
	var parts []string
	for _, r := range p.rules() {
		if r.n > 0 {
			parts = append(parts, fmt.Sprintf("keep-%s %d", r.reason, r.n))
		}
	}
	return strings.Join(parts, ", ")
}

// GroupBy says which snapshot fields split snapshots into groups the policy is applied to separately.
// The zero value puts every snapshot in one group.
type GroupBy struct {
	Host  bool
	Paths bool
	Tags  bool
}

// DefaultGroupBy groups by host and paths: each node's backups of each volume are retained on their own.
var DefaultGroupBy = GroupBy{Host: true, Paths: true}

// ParseGroupBy reads a comma-separated list of host, paths and tags; the empty string means one group.
func ParseGroupBy(s string) (GroupBy, error) {
	var g GroupBy
	if strings.TrimSpace(s) == "" {
		return g, nil
	}
	for f := range strings.SplitSeq(s, ",") {
		switch strings.TrimSpace(f) {
		case "host":
			g.Host = true
		case "paths":
			g.Paths = true
		case "tags":
			g.Tags = true
		default:
			return g, fmt.Errorf("cannot group by %q: use a comma-separated list of host, paths and tags", strings.TrimSpace(f))
		}
	}
	return g, nil
}

// String is the comma-separated form ParseGroupBy reads.
func (g GroupBy) String() string {
	var parts []string
	if g.Host {
		parts = append(parts, "host")
	}
	if g.Paths {
		parts = append(parts, "paths")
	}
	if g.Tags {
		parts = append(parts, "tags")
	}
	return strings.Join(parts, ",")
}

// GroupKey is what the snapshots of a group share: the fields By names; the others are empty.
type GroupKey struct {
	By    GroupBy
	Host  string
	Paths []string // sorted
	Tags  map[string]string
}

// String describes the key for people, as in "host node-a, paths /data"; it is empty for the single group
// of an empty GroupBy.
func (k GroupKey) String() string {
	var parts []string
	if k.By.Host {
		parts = append(parts, "host "+orNone(k.Host))
	}
	if k.By.Paths {
		parts = append(parts, "paths "+orNone(strings.Join(k.Paths, ",")))
	}
	if k.By.Tags {
		tags := make([]string, 0, len(k.Tags))
		for _, name := range slices.Sorted(maps.Keys(k.Tags)) {
			tags = append(tags, name+"="+k.Tags[name])
		}
		parts = append(parts, "tags "+orNone(strings.Join(tags, ",")))
	}
	return strings.Join(parts, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// Kept is a snapshot the policy keeps and the rules that keep it.
type Kept struct {
	Snapshot *snapshot.Snapshot
	Reasons  []string
}

// Group is the plan for one group: what is kept and what is removed, each oldest first.
type Group struct {
	Key    GroupKey
	Keep   []Kept
	Remove []*snapshot.Snapshot
}

// Options say which snapshots a policy considers, how they are grouped, and what it keeps.
type Options struct {
	Policy  Policy
	GroupBy GroupBy
	// Filter picks the snapshots considered at all: the others are neither kept nor removed.
	Filter repo.Filter
}

// Apply filters and groups the snapshots and applies the policy to each group. Groups are ordered by key.
// It refuses an invalid or empty policy.
func Apply(snaps []*snapshot.Snapshot, opts Options) ([]Group, error) {
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	groups := map[string]*Group{}
	members := map[string][]*snapshot.Snapshot{}
	for _, s := range snaps {
		if !opts.Filter.Match(s) {
			continue
		}
		key := keyOf(s, opts.GroupBy)
		ks := groupKeyString(key)
		if _, ok := groups[ks]; !ok {
			groups[ks] = &Group{Key: key}
		}
		members[ks] = append(members[ks], s)
	}
	out := make([]Group, 0, len(groups))
	for _, ks := range slices.Sorted(maps.Keys(groups)) {
		g := groups[ks]
		g.Keep, g.Remove = applyToGroup(members[ks], opts.Policy)
		out = append(out, *g)
	}
	return out, nil
}

// applyToGroup runs every rule over one group's snapshots and returns kept and removed, oldest first.
func applyToGroup(snaps []*snapshot.Snapshot, p Policy) ([]Kept, []*snapshot.Snapshot) {
	newestFirst := slices.Clone(snaps)
	slices.SortFunc(newestFirst, func(a, b *snapshot.Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		// Equal times: order by ID so the plan does not depend on the order snapshots were listed in.
		return id.Compare(b.ID, a.ID)
	})
	times := make([]time.Time, len(newestFirst))
	for i, s := range newestFirst {
		times[i] = s.Time
	}
	reasons := p.reasonsNewestFirst(times)
	var keep []Kept
	var remove []*snapshot.Snapshot
	for i, s := range slices.Backward(newestFirst) {
		if len(reasons[i]) > 0 {
			keep = append(keep, Kept{Snapshot: s, Reasons: reasons[i]})
		} else {
			remove = append(remove, s)
		}
	}
	return keep, remove
}

// KeepTimes applies the policy to anything that has a time, not only snapshots (the controller uses it for
// a schedule's Backups). times must be sorted newest first; ties are the caller's to order. It returns, for
// each time, the rules that keep it; an empty entry is not kept. It refuses an invalid or empty policy, which
// would keep nothing.
func (p Policy) KeepTimes(newestFirst []time.Time) ([][]string, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if !slices.IsSortedFunc(newestFirst, func(a, b time.Time) int { return b.Compare(a) }) {
		return nil, errors.New("times are not sorted newest first")
	}
	return p.reasonsNewestFirst(newestFirst), nil
}

// reasonsNewestFirst runs every rule over times sorted newest first.
func (p Policy) reasonsNewestFirst(times []time.Time) [][]string {
	reasons := make([][]string, len(times))
	for _, r := range p.rules() {
		kept := 0
		var last int64
		for i, t := range times {
			if kept >= r.n {
				break
			}
			if r.bucket != nil {
				b := r.bucket(t)
				// Newest first, so a bucket's times are adjacent: a new bucket value is a bucket not yet seen.
				if kept > 0 && b == last {
					continue
				}
				last = b
			}
			reasons[i] = append(reasons[i], r.reason)
			kept++
		}
	}
	return reasons
}

func keyOf(s *snapshot.Snapshot, by GroupBy) GroupKey {
	k := GroupKey{By: by}
	if by.Host {
		k.Host = s.Host
	}
	if by.Paths {
		k.Paths = slices.Sorted(slices.Values(s.Paths))
	}
	if by.Tags {
		k.Tags = maps.Clone(s.Tags)
	}
	return k
}

// groupKeyString encodes a key without ambiguity (hosts, paths and tags may hold commas or spaces), to find
// a snapshot's group and to order the groups.
func groupKeyString(k GroupKey) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q", k.Host)
	for _, p := range k.Paths {
		fmt.Fprintf(&b, " %q", p)
	}
	b.WriteString(" |")
	for _, name := range slices.Sorted(maps.Keys(k.Tags)) {
		fmt.Fprintf(&b, " %q=%q", name, k.Tags[name])
	}
	return b.String()
}
