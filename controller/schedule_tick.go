package controller

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ScheduleTimeFormat is the UTC tick time in the names of a schedule's Backups: <schedule>-20060102150405.
const ScheduleTimeFormat = "20060102150405"

// MaxScheduleNameLength leaves room in a Backup's name (and its PodVolumeBackups' label) for the tick time.
const MaxScheduleNameLength = maxNameLength - len("-"+ScheduleTimeFormat)

// ParseSchedule reads a schedule expression as the controller does: five cron fields, a descriptor such as
// @daily, or @every with a Go duration; times are UTC. The CLI checks expressions with it before creating a
// Schedule. An expression that never fires (February 30th) is refused too.
func ParseSchedule(expr string) (cron.Schedule, error) {
	if strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=") {
		return nil, fmt.Errorf("schedule %q names a time zone: schedules run in UTC, so write the times in UTC", expr)
	}
	s, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fmt.Errorf("schedule %q is not a cron expression (five fields such as \"0 3 * * *\", a descriptor such as @daily, or @every 6h): %w", expr, err)
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		return nil, fmt.Errorf("schedule %q never fires", expr)
	}
	return s, nil
}

// ScheduleBackupName names the Backup a schedule creates for a tick. Equal names for equal ticks make a run
// idempotent: a second controller (or the same one after a restart) gets AlreadyExists.
func ScheduleBackupName(schedule string, tick time.Time) string {
	return schedule + "-" + tick.UTC().Format(ScheduleTimeFormat)
}

// errNoTick means an expression has no tick in the next five years (cron gives up there).
var errNoTick = errors.New("no tick within five years")

// nextTick is the first tick strictly after t, in UTC.
func nextTick(s cron.Schedule, t time.Time) (time.Time, error) {
	n := s.Next(t.UTC())
	if n.IsZero() {
		return time.Time{}, errNoTick
	}
	return n.UTC(), nil
}

// catchUpWindows are the spans latestTick searches before now, smallest first, so a schedule that fires every
// second and was stopped for a year does not walk through every tick it missed.
var catchUpWindows = []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour, 5 * 367 * 24 * time.Hour}

// latestTick finds the newest tick in (after, now]: the one run a schedule owes at now, however many it
// missed (at most one missed run is caught up). ok is false when no tick is due.
func latestTick(s cron.Schedule, after, now time.Time) (tick time.Time, ok bool) {
	after, now = after.UTC(), now.UTC()
	for _, w := range catchUpWindows {
		from := now.Add(-w)
		if from.Before(after) {
			from = after
		}
		t := s.Next(from)
		if t.IsZero() || t.After(now) {
			if from.Equal(after) {
				// The window reaches back to the last tick handled: nothing is due.
				return time.Time{}, false
			}
			continue
		}
		for {
			n := s.Next(t)
			if n.IsZero() || n.After(now) {
				return t.UTC(), true
			}
			t = n
		}
	}
	// Missed for more than five years: the one run owed is now's, as if the schedule were new.
	return time.Time{}, false
}
