package controller

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func TestParseSchedule(t *testing.T) {
	for _, expr := range []string{"0 3 * * *", "*/5 * * * *", "@daily", "@hourly", "@every 5s", "@every 1h30m", "0 0 * * MON"} {
		if _, err := ParseSchedule(expr); err != nil {
			t.Errorf("ParseSchedule(%q): %v", expr, err)
		}
	}
	for expr, want := range map[string]string{
		"":                               "not a cron expression",
		"0 3 * *":                        "not a cron expression",
		"61 * * * *":                     "not a cron expression",
		"@every 5 sec":                   "not a cron expression",
		"@fortnightly":                   "not a cron expression",
		"0 0 30 2 *":                     "never fires",
		"CRON_TZ=Europe/Paris 0 3 * * *": "run in UTC",
		"TZ=UTC @daily":                  "run in UTC",
	} {
		_, err := ParseSchedule(expr)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseSchedule(%q) = %v, want an error saying %q", expr, err, want)
		}
	}
}

func TestScheduleBackupName(t *testing.T) {
	tick := time.Date(2026, 11, 25, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	if got, want := ScheduleBackupName("nightly", tick), "nightly-20261125020405"; got != want {
		t.Errorf("ScheduleBackupName = %q, want %q (UTC)", got, want)
	}
	long := strings.Repeat("a", MaxScheduleNameLength)
	if n := len(ScheduleBackupName(long, tick)); n != maxNameLength {
		t.Errorf("longest schedule name gives a %d-character backup name, want %d", n, maxNameLength)
	}
}

func TestLatestTick(t *testing.T) {
	for _, c := range []struct {
		name, expr, after, now string
		want                   string // "" when none is due
	}{
		{"not yet", "0 3 * * *", "2026-11-25T03:00:00Z", "2026-11-26T02:59:59Z", ""},
		{"exactly at the tick", "0 3 * * *", "2026-11-25T03:00:00Z", "2026-11-26T03:00:00Z", "2026-11-26T03:00:00Z"},
		{"a little late", "0 3 * * *", "2026-11-25T03:00:00Z", "2026-11-26T03:00:07Z", "2026-11-26T03:00:00Z"},
		{"three missed: only the newest", "0 3 * * *", "2026-11-22T03:00:00Z", "2026-11-25T12:00:00Z", "2026-11-25T03:00:00Z"},
		{"every minute, a year missed", "* * * * *", "2025-11-25T03:00:00Z", "2026-11-25T03:00:30Z", "2026-11-25T03:00:00Z"},
		{"yearly, three years missed", "@yearly", "2023-01-01T00:00:00Z", "2026-11-25T00:00:00Z", "2026-01-01T00:00:00Z"},
		{"every 5s from the last tick", "@every 5s", "2026-11-25T03:00:00Z", "2026-11-25T03:00:05Z", "2026-11-25T03:00:05Z"},
		{"every 5s, 22s missed", "@every 5s", "2026-11-25T03:00:00Z", "2026-11-25T03:00:22Z", "2026-11-25T03:00:20Z"},
		{"every 5s, not yet", "@every 5s", "2026-11-25T03:00:00Z", "2026-11-25T03:00:04Z", ""},
		{"now before after", "@hourly", "2026-11-25T03:00:00Z", "2026-11-25T02:00:00Z", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := ParseSchedule(c.expr)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := latestTick(s, utc(c.after), utc(c.now))
			switch {
			case c.want == "" && ok:
				t.Errorf("tick %s due, want none", got)
			case c.want != "" && !ok:
				t.Errorf("no tick due, want %s", c.want)
			case c.want != "" && !got.Equal(utc(c.want)):
				t.Errorf("tick %s due, want %s", got, c.want)
			}
		})
	}
}

func TestNextTick(t *testing.T) {
	for _, c := range []struct{ expr, from, want string }{
		{"0 3 * * *", "2026-11-25T03:00:00Z", "2026-11-26T03:00:00Z"},
		{"0 3 * * *", "2026-11-25T02:59:59Z", "2026-11-25T03:00:00Z"},
		{"@every 5s", "2026-11-25T03:00:00Z", "2026-11-25T03:00:05Z"},
		{"*/15 * * * *", "2026-11-25T03:07:00Z", "2026-11-25T03:15:00Z"},
	} {
		s, err := ParseSchedule(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		// The controller's times are UTC whatever the machine's zone; a local time in must not shift ticks.
		from := utc(c.from).In(time.FixedZone("X", -5*3600))
		got, err := nextTick(s, from)
		if err != nil || !got.Equal(utc(c.want)) || got.Location() != time.UTC {
			t.Errorf("nextTick(%q, %s) = %s, %v; want %s UTC", c.expr, c.from, got, err, c.want)
		}
	}
}
