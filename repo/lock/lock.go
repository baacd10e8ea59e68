// Package lock keeps repository locks: shared locks for work that reads or only adds (backup, restore, check,
// prune's planning) and exclusive locks for work that deletes (prune's deletion phase). A lock is a sealed
// object under locks/ that its holder refreshes; a lock nobody refreshes becomes stale and is ignored.
package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/storage"
)

// ErrLocked means a conflicting live lock kept the repository for longer than the wait timeout.
var ErrLocked = errors.New("the repository is locked")

// ErrLockLost means a held lock could not be refreshed for so long that others may treat it as stale; the
// work under it was cancelled.
var ErrLockLost = errors.New("the repository lock could not be refreshed in time")

// lockAD is the additional data lock objects are sealed with, so no other object passes for a lock.
var lockAD = []byte("straddle lock v1")

const prefix = "locks/"

// Kind says whether a lock may coexist with others.
type Kind string

// Lock kinds.
const (
	// Shared locks coexist with other shared locks.
	Shared Kind = "shared"
	// Exclusive locks exclude every other live lock.
	Exclusive Kind = "exclusive"
)

// PurposePrune is the purpose prune's locks carry; two prunes never run at once.
const PurposePrune = "prune"

// Lock is the content of one lock object.
type Lock struct {
	// ID names the object (locks/<ID>); it changes at every refresh, since writers never overwrite.
	ID        id.ID     `json:"-"`
	Kind      Kind      `json:"kind"`
	Purpose   string    `json:"purpose"`
	Host      string    `json:"hostname"`
	PID       int       `json:"pid"`
	User      string    `json:"user,omitempty"`
	Created   time.Time `json:"created"`
	Refreshed time.Time `json:"refreshed"`
}

// String describes the holder the way error messages name it.
func (l Lock) String() string {
	return fmt.Sprintf("%s on host %s pid %d since %s", l.Purpose, l.Host, l.PID, l.Created.UTC().Format(time.RFC3339))
}

// Options tune locking; zero values mean defaults.
type Options struct {
	// WaitTimeout is how long to keep retrying while a conflicting live lock exists; 0 fails at once.
	WaitTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts (defaults 200 ms and 15 s).
	RetryMin, RetryMax time.Duration
	// RefreshInterval is how often a held lock is refreshed (default 5 minutes).
	RefreshInterval time.Duration
	// StaleTimeout is how long after its last refresh a lock is stale (default 30 minutes). It must be at
	// least three refresh intervals.
	StaleTimeout time.Duration
	// Host, PID and User identify this process in its locks; defaults come from the operating system.
	Host string
	PID  int
	User string
	// ProcessAlive reports whether a process of this host runs; default: signal 0.
	ProcessAlive func(pid int) bool
}

// Defaults for Options.
const (
	DefaultRefreshInterval = 5 * time.Minute
	DefaultStaleTimeout    = 30 * time.Minute
)

func (o Options) withDefaults() (Options, error) {
	if o.RetryMin <= 0 {
		o.RetryMin = 200 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 15 * time.Second
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.StaleTimeout <= 0 {
		o.StaleTimeout = DefaultStaleTimeout
	}
	if o.StaleTimeout < 3*o.RefreshInterval {
		return o, fmt.Errorf("lock stale timeout %v is under three refresh intervals of %v", o.StaleTimeout, o.RefreshInterval)
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.PID == 0 {
		o.PID = os.Getpid()
	}
	if o.User == "" {
		if u, err := user.Current(); err == nil {
			o.User = u.Username
		}
	}
	if o.ProcessAlive == nil {
		o.ProcessAlive = processAlive
	}
	return o, nil
}

// processAlive asks the kernel whether pid exists; EPERM means it does, under another user.
func processAlive(pid int) bool {
	if pid <= 0 {
		return true
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// StaleReason says why l is stale at now, or returns "" for a live lock.
func (o Options) StaleReason(l Lock, now time.Time) string {
	if age := now.Sub(l.Refreshed); age > o.StaleTimeout {
		return fmt.Sprintf("not refreshed for %s (stale after %s)", age.Round(time.Second), o.StaleTimeout)
	}
	// Only a process of this host can be looked up; elsewhere the refresh time is all there is.
	if l.Host == o.Host && l.PID != o.PID && !o.ProcessAlive(l.PID) {
		return fmt.Sprintf("process %d no longer runs on this host", l.PID)
	}
	return ""
}

// Entry is one stored lock object: its content, or why it cannot be read.
type Entry struct {
	Lock
	// Unreadable says why the object did not open or decode; such an object holds nothing and is stale.
	Unreadable string
}

// List reads every lock object, ordered by creation time. Objects that vanish while being read (a holder
// refreshed or released them) are left out.
func List(ctx context.Context, r *repo.Repository) ([]Entry, error) {
	var ids []id.ID
	if err := r.Backend().List(ctx, prefix, func(fi storage.Info) error {
		if i, err := id.Parse(strings.TrimPrefix(fi.Name, prefix)); err == nil {
			ids = append(ids, i)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	out := make([]Entry, 0, len(ids))
	for _, lid := range ids {
		e, err := load(ctx, r, lid)
		if errors.Is(err, storage.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return id.Compare(a.ID, b.ID)
	})
	return out, nil
}

func load(ctx context.Context, r *repo.Repository, lid id.ID) (Entry, error) {
	e := Entry{Lock: Lock{ID: lid}}
	buf, err := storage.ReadAll(ctx, r.Backend(), prefix+lid.String())
	if err != nil {
		return e, fmt.Errorf("read lock %s: %w", lid.Short(), err)
	}
	plain, err := r.Key().Open(nil, buf, lockAD)
	if err != nil {
		e.Unreadable = err.Error()
		return e, nil
	}
	if err := json.Unmarshal(plain, &e.Lock); err != nil || (e.Kind != Shared && e.Kind != Exclusive) {
		e.Unreadable = fmt.Sprintf("does not decode as a lock (kind %q, %v)", e.Kind, err)
		return e, nil
	}
	e.ID = lid
	return e, nil
}

func save(ctx context.Context, r *repo.Repository, l Lock) error {
	plain, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("encode lock: %w", err)
	}
	if err := storage.PutBytes(ctx, r.Backend(), prefix+l.ID.String(), r.Key().Seal(nil, plain, lockAD)); err != nil {
		return fmt.Errorf("write lock %s: %w", l.ID.Short(), err)
	}
	return nil
}

// Remove deletes one lock object.
func Remove(ctx context.Context, r *repo.Repository, lid id.ID) error {
	if err := r.Backend().Delete(ctx, prefix+lid.String()); err != nil {
		return fmt.Errorf("remove lock %s: %w", lid.Short(), err)
	}
	return nil
}

// Verdict is what Unlock decided about one lock.
type Verdict struct {
	Entry
	// Stale says why the lock is stale; "" for a live lock.
	Stale   string
	Removed bool
}

// Unlock removes stale locks, or every lock when all is set, and reports its verdict on each. With dryRun it
// removes nothing. Removing a live lock lets prune delete data a running backup needs: only for holders known
// to be gone.
func Unlock(ctx context.Context, r *repo.Repository, opts Options, all, dryRun bool) ([]Verdict, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	entries, err := List(ctx, r)
	if err != nil {
		return nil, err
	}
	now := r.Now()
	out := make([]Verdict, 0, len(entries))
	for _, e := range entries {
		v := Verdict{Entry: e, Stale: e.Unreadable}
		if v.Stale == "" {
			v.Stale = opts.StaleReason(e.Lock, now)
		}
		if (all || v.Stale != "") && !dryRun {
			if err := Remove(ctx, r, e.ID); err != nil {
				return out, err
			}
			v.Removed = true
		}
		out = append(out, v)
	}
	return out, nil
}
