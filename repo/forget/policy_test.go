package forget

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/snapshot"
)

// at makes a snapshot of host node-a and path /data whose ID spells its name, so plans print readably.
func at(name, when string, mods ...func(*snapshot.Snapshot)) *snapshot.Snapshot {
	t, err := time.Parse(time.RFC3339, when)
	if err != nil {
		panic(err)
	}
	s := &snapshot.Snapshot{Time: t, Host: "node-a", Paths: []string{"/data"}}
	copy(s.ID[:], name)
	for _, m := range mods {
		m(s)
	}
	return s
}

func host(h string) func(*snapshot.Snapshot) { return func(s *snapshot.Snapshot) { s.Host = h } }

func paths(p ...string) func(*snapshot.Snapshot) { return func(s *snapshot.Snapshot) { s.Paths = p } }

func tags(kv ...string) func(*snapshot.Snapshot) {
	return func(s *snapshot.Snapshot) {
		s.Tags = map[string]string{}
		for _, t := range kv {
			k, v, _ := strings.Cut(t, "=")
			s.Tags[k] = v
		}
	}
}

func name(i id.ID) string { return strings.TrimRight(string(i[:]), "\x00") }

// describe prints a plan as "KEY: keep a[last] b[daily,weekly]; remove c d", one line per group.
func describe(groups []Group) []string {
	var lines []string
	for _, g := range groups {
		var keep, remove []string
		for _, k := range g.Keep {
			keep = append(keep, fmt.Sprintf("%s[%s]", name(k.Snapshot.ID), strings.Join(k.Reasons, ",")))
		}
		for _, s := range g.Remove {
			remove = append(remove, name(s.ID))
		}
		lines = append(lines, fmt.Sprintf("%s: keep %s; remove %s", g.Key, strings.Join(keep, " "), strings.Join(remove, " ")))
	}
	return lines
}

const dataGroup = "host node-a, paths /data"

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name  string
		snaps []*snapshot.Snapshot
		opts  Options
		want  []string
	}{
		{
			name: "keep-last keeps the newest",
			snaps: []*snapshot.Snapshot{at("c", "2026-03-01T12:00:00Z"), at("a", "2026-03-01T10:00:00Z"),
				at("e", "2026-03-01T14:00:00Z"), at("b", "2026-03-01T11:00:00Z"), at("d", "2026-03-01T13:00:00Z")},
			opts: Options{Policy: Policy{Last: 2}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep d[last] e[last]; remove a b c"},
		},
		{
			name:  "keep-last beyond the count keeps all",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z"), at("b", "2026-03-01T11:00:00Z")},
			opts:  Options{Policy: Policy{Last: 10}, GroupBy: DefaultGroupBy},
			want:  []string{dataGroup + ": keep a[last] b[last]; remove "},
		},
		{
			name: "keep-last breaks equal times by ID",
			snaps: []*snapshot.Snapshot{at("b", "2026-03-01T10:00:00Z"), at("a", "2026-03-01T10:00:00Z"),
				at("c", "2026-03-01T10:00:00Z")},
			opts: Options{Policy: Policy{Last: 1}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep c[last]; remove a b"},
		},
		{
			name: "hourly keeps the newest of each hour",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:05:00Z"), at("b", "2026-03-01T10:40:00Z"),
				at("c", "2026-03-01T11:10:00Z"), at("d", "2026-03-01T11:50:00Z"), at("e", "2026-03-01T13:00:00Z"),
				at("f", "2026-02-28T13:30:00Z")},
			opts: Options{Policy: Policy{Hourly: 3}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep b[hourly] d[hourly] e[hourly]; remove f a c"},
		},
		{
			name: "hourly tells the same hour of different days apart",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:05:00Z"), at("b", "2026-03-02T10:05:00Z"),
				at("c", "2027-03-02T10:05:00Z")},
			opts: Options{Policy: Policy{Hourly: 5}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep a[hourly] b[hourly] c[hourly]; remove "},
		},
		{
			// b is 2 March at home (UTC+2) but 1 March in UTC, so it is 1 March's newest and a goes.
			name: "daily buckets by the UTC day",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z"), at("b", "2026-03-02T01:30:00+02:00"),
				at("c", "2026-03-02T12:00:00Z")},
			opts: Options{Policy: Policy{Daily: 2}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep b[daily] c[daily]; remove a"},
		},
		{
			name: "daily stops after N days",
			snaps: []*snapshot.Snapshot{at("a", "2026-02-27T10:00:00Z"), at("b", "2026-02-28T10:00:00Z"),
				at("c", "2026-03-01T09:00:00Z"), at("d", "2026-03-01T10:00:00Z")},
			opts: Options{Policy: Policy{Daily: 2}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep b[daily] d[daily]; remove a c"},
		},
		{
			// ISO weeks start on Monday: Sunday 22 November ends week 47, Monday 23 November starts week 48.
			name: "weekly splits Sunday from Monday",
			snaps: []*snapshot.Snapshot{at("a", "2026-11-16T09:00:00Z"), at("b", "2026-11-22T23:00:00Z"),
				at("c", "2026-11-23T00:30:00Z"), at("d", "2026-11-25T12:00:00Z")},
			opts: Options{Policy: Policy{Weekly: 2}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep b[weekly] d[weekly]; remove a c"},
		},
		{
			// 28 December 2026 to 3 January 2027 is one ISO week (2026-W53) across the calendar year's end.
			name: "weekly spans the year end by ISO week",
			snaps: []*snapshot.Snapshot{at("a", "2026-12-27T12:00:00Z"), at("b", "2026-12-28T08:00:00Z"),
				at("c", "2027-01-03T20:00:00Z"), at("d", "2027-01-04T08:00:00Z")},
			opts: Options{Policy: Policy{Weekly: 3}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep a[weekly] c[weekly] d[weekly]; remove b"},
		},
		{
			name: "monthly keeps the newest of each month across the year end",
			snaps: []*snapshot.Snapshot{at("a", "2026-10-31T23:59:00Z"), at("b", "2026-11-01T00:00:00Z"),
				at("c", "2026-11-30T12:00:00Z"), at("d", "2026-12-31T23:00:00Z"), at("e", "2027-01-01T01:00:00Z")},
			opts: Options{Policy: Policy{Monthly: 3}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep c[monthly] d[monthly] e[monthly]; remove a b"},
		},
		{
			name: "combined rules keep the union and say why",
			snaps: []*snapshot.Snapshot{at("a", "2026-01-30T10:00:00Z"), at("b", "2026-01-31T09:00:00Z"),
				at("c", "2026-02-01T08:00:00Z"), at("d", "2026-02-01T20:00:00Z"), at("e", "2026-02-02T07:00:00Z"),
				at("f", "2026-02-02T09:00:00Z")},
			opts: Options{Policy: Policy{Last: 1, Daily: 2, Monthly: 2}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep b[monthly] d[daily] f[last,daily,monthly]; remove a c e"},
		},
		{
			name: "every rule at once",
			snaps: []*snapshot.Snapshot{at("a", "2026-01-05T10:00:00Z"), at("b", "2026-02-02T10:00:00Z"),
				at("c", "2026-02-03T10:00:00Z"), at("d", "2026-02-03T11:00:00Z")},
			opts: Options{Policy: Policy{Last: 1, Hourly: 1, Daily: 1, Weekly: 1, Monthly: 2}, GroupBy: DefaultGroupBy},
			want: []string{dataGroup + ": keep a[monthly] d[last,hourly,daily,weekly,monthly]; remove b c"},
		},
		{
			name: "host and paths make separate groups by default",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z"), at("b", "2026-03-01T11:00:00Z"),
				at("c", "2026-03-01T12:00:00Z", paths("/logs")), at("d", "2026-03-01T13:00:00Z", paths("/logs")),
				at("e", "2026-03-01T14:00:00Z", host("node-b")), at("f", "2026-03-01T15:00:00Z", host("node-b"))},
			opts: Options{Policy: Policy{Last: 1}, GroupBy: DefaultGroupBy},
			want: []string{
				dataGroup + ": keep b[last]; remove a",
				"host node-a, paths /logs: keep d[last]; remove c",
				"host node-b, paths /data: keep f[last]; remove e",
			},
		},
		{
			name: "paths group regardless of their order",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z", paths("/x", "/y")),
				at("b", "2026-03-01T11:00:00Z", paths("/y", "/x"))},
			opts: Options{Policy: Policy{Last: 1}, GroupBy: GroupBy{Paths: true}},
			want: []string{"paths /x,/y: keep b[last]; remove a"},
		},
		{
			name: "grouping by host alone joins paths",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z"), at("b", "2026-03-01T11:00:00Z", paths("/logs")),
				at("c", "2026-03-01T12:00:00Z", host("node-b"))},
			opts: Options{Policy: Policy{Last: 1}, GroupBy: GroupBy{Host: true}},
			want: []string{"host node-a: keep b[last]; remove a", "host node-b: keep c[last]; remove "},
		},
		{
			name: "grouping by tags",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z", tags("pod=db-0")), at("b", "2026-03-01T11:00:00Z", tags("pod=db-0")),
				at("c", "2026-03-01T12:00:00Z", tags("pod=db-1")), at("d", "2026-03-01T13:00:00Z", tags("pod=db-1", "pvc=data")),
				at("e", "2026-03-01T14:00:00Z")},
			opts: Options{Policy: Policy{Last: 1}, GroupBy: GroupBy{Tags: true}},
			want: []string{
				"tags (none): keep e[last]; remove ",
				"tags pod=db-0: keep b[last]; remove a",
				"tags pod=db-1: keep c[last]; remove ",
				"tags pod=db-1,pvc=data: keep d[last]; remove ",
			},
		},
		{
			name: "no grouping puts everything in one group",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z"), at("b", "2026-03-01T11:00:00Z", host("node-b")),
				at("c", "2026-03-01T12:00:00Z", paths("/logs"), tags("pod=x"))},
			opts: Options{Policy: Policy{Last: 1}},
			want: []string{": keep c[last]; remove a b"},
		},
		{
			name: "tag filters consider only snapshots with every tag",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z", tags("pod=db-0", "ns=prod")), at("b", "2026-03-01T11:00:00Z", tags("pod=db-0", "ns=prod")),
				at("c", "2026-03-01T12:00:00Z", tags("pod=db-0")), at("d", "2026-03-01T13:00:00Z", tags("pod=db-1", "ns=prod")),
				at("e", "2026-03-01T14:00:00Z")},
			opts: Options{Policy: Policy{Last: 1}, GroupBy: DefaultGroupBy, Filter: repo.Filter{Tags: map[string]string{"pod": "db-0", "ns": "prod"}}},
			want: []string{dataGroup + ": keep b[last]; remove a"},
		},
		{
			name: "host and path filters",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z"), at("b", "2026-03-01T11:00:00Z"),
				at("c", "2026-03-01T12:00:00Z", paths("/logs")), at("d", "2026-03-01T13:00:00Z", host("node-b"))},
			opts: Options{Policy: Policy{Last: 1}, GroupBy: DefaultGroupBy, Filter: repo.Filter{Host: "node-a", Path: "/data"}},
			want: []string{dataGroup + ": keep b[last]; remove a"},
		},
		{
			name:  "no snapshot passes the filter",
			snaps: []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z")},
			opts:  Options{Policy: Policy{Last: 1}, GroupBy: DefaultGroupBy, Filter: repo.Filter{Host: "elsewhere"}},
			want:  nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			groups, err := Apply(tc.snaps, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(groups); !slices.Equal(got, tc.want) {
				t.Errorf("plan:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestApplyRefusesEmptyAndNegativePolicies(t *testing.T) {
	snaps := []*snapshot.Snapshot{at("a", "2026-03-01T10:00:00Z")}
	if _, err := Apply(snaps, Options{GroupBy: DefaultGroupBy}); !errors.Is(err, ErrEmptyPolicy) {
		t.Errorf("empty policy: %v", err)
	}
	if _, err := Apply(nil, Options{}); !errors.Is(err, ErrEmptyPolicy) {
		t.Errorf("empty policy over no snapshots: %v", err)
	}
	if _, err := Apply(snaps, Options{Policy: Policy{Last: 1, Daily: -1}}); err == nil || !strings.Contains(err.Error(), "keep-daily -1") {
		t.Errorf("negative count: %v", err)
	}
}

func TestParseGroupBy(t *testing.T) {
	for in, want := range map[string]GroupBy{
		"host,paths":       DefaultGroupBy,
		"":                 {},
		" ":                {},
		"tags":             {Tags: true},
		"paths, host,tags": {Host: true, Paths: true, Tags: true},
	} {
		got, err := ParseGroupBy(in)
		if err != nil || got != want {
			t.Errorf("ParseGroupBy(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"pod", "host,", "host,,paths"} {
		if _, err := ParseGroupBy(in); err == nil {
			t.Errorf("ParseGroupBy(%q) succeeded", in)
		}
	}
	if s := (GroupBy{Host: true, Tags: true}).String(); s != "host,tags" {
		t.Errorf("String: %q", s)
	}
}

func TestPolicyString(t *testing.T) {
	if s := (Policy{Last: 3, Weekly: 4}).String(); s != "keep-last 3, keep-weekly 4" {
		t.Errorf("String: %q", s)
	}
}

// TestKeepTimes checks the policy over bare times gives the same choice Apply makes over snapshots, and that
// it refuses what it cannot judge.
func TestKeepTimes(t *testing.T) {
	var times []time.Time
	for _, s := range []string{"2026-03-02T10:30:00Z", "2026-03-02T10:10:00Z", "2026-03-02T09:50:00Z", "2026-03-01T23:00:00Z", "2026-02-27T12:00:00Z"} {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		times = append(times, tm)
	}
	got, err := Policy{Last: 1, Hourly: 2, Daily: 3}.KeepTimes(times)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{ReasonLast, ReasonHourly, ReasonDaily}, nil, {ReasonHourly}, {ReasonDaily}, {ReasonDaily}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("KeepTimes = %v, want %v", got, want)
	}
	if _, err := (Policy{}).KeepTimes(times); !errors.Is(err, ErrEmptyPolicy) {
		t.Errorf("empty policy: err = %v, want ErrEmptyPolicy", err)
	}
	if _, err := (Policy{Last: 1}).KeepTimes(reversed(times)); err == nil {
		t.Error("times oldest first: no error")
	}
}

func reversed(ts []time.Time) []time.Time {
	out := slices.Clone(ts)
	slices.Reverse(out)
	return out
}
