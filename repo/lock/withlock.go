package lock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
)

// LockedError names the live lock that kept the repository. It matches ErrLocked.
type LockedError struct {
	Holder Lock
	// Kind and Purpose are what the caller asked for.
	Kind    Kind
	Purpose string
}

func (e *LockedError) Error() string {
	switch {
	case e.Holder.Kind == Exclusive:
		return fmt.Sprintf("the repository is locked exclusively by %s", e.Holder)
	case e.Kind == Exclusive:
		return fmt.Sprintf("the repository is locked by %s, and %s needs it exclusively", e.Holder, e.Purpose)
	default:
		return fmt.Sprintf("the repository is locked by another %s", e.Holder)
	}
}

// Is makes errors.Is(err, ErrLocked) hold.
func (e *LockedError) Is(target error) bool { return target == ErrLocked }

// WithLock takes a lock of kind for purpose, runs fn while a heartbeat refreshes the lock, and removes the
// lock when fn returns. If the lock cannot be refreshed for nearly the stale timeout, fn's context is
// cancelled and WithLock returns ErrLockLost: others may have treated the lock as stale by then.
// Locks held by callers up the context (a prune taking its exclusive lock while holding its shared one) do
// not conflict with the new one.
func WithLock(ctx context.Context, r *repo.Repository, kind Kind, purpose string, opts Options, fn func(ctx context.Context) error) error {
	if kind != Shared && kind != Exclusive {
		return fmt.Errorf("invalid lock kind %q", kind)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return err
	}
	h, err := acquire(ctx, r, kind, purpose, opts)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithCancelCause(context.WithValue(ctx, heldKey{}, append(heldFrom(ctx), h)))
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		h.heartbeat(lctx, cancel, stop)
	}()
	err = fn(lctx)
	close(stop)
	<-done
	if lost := context.Cause(lctx); errors.Is(lost, ErrLockLost) {
		if err == nil || errors.Is(err, context.Canceled) {
			err = lost
		} else {
			err = fmt.Errorf("%w; then: %w", lost, err)
		}
	}
	cancel(nil)
	return errors.Join(err, h.release(ctx))
}

// held is a lock this process holds.
type held struct {
	r    *repo.Repository
	o    Options
	mu   sync.Mutex
	cur  Lock
	ids  map[id.ID]bool // every object written for this lock and not known to be deleted
	last time.Time      // when cur was written, by the repository's clock
}

type heldKey struct{}

func heldFrom(ctx context.Context) []*held {
	h, _ := ctx.Value(heldKey{}).([]*held)
	return h
}

// heldIDs lists the objects of the locks held up the context, which a new lock does not conflict with.
func heldIDs(ctx context.Context) map[id.ID]bool {
	out := map[id.ID]bool{}
	for _, h := range heldFrom(ctx) {
		h.mu.Lock()
		for i := range h.ids {
			out[i] = true
		}
		h.mu.Unlock()
	}
	return out
}

// acquire writes a lock, then lists the others; with a conflicting live lock it withdraws its own and tries
// again with backoff until the wait timeout. Writing before listing makes two racing takers see at least one
// another, so they never both proceed.
func acquire(ctx context.Context, r *repo.Repository, kind Kind, purpose string, o Options) (*held, error) {
	wctx, cancel := context.WithTimeout(ctx, o.WaitTimeout)
	defer cancel()
	delay := o.RetryMin
	now := r.Now()
	l := Lock{Kind: kind, Purpose: purpose, Host: o.Host, PID: o.PID, User: o.User, Created: now, Refreshed: now}
	written := false
	for {
		if !written {
			l.ID = id.Random()
			if err := save(ctx, r, l); err != nil {
				return nil, err
			}
			written = true
		}
		// Read the held locks afresh each time: their heartbeats replace their objects.
		holder, keep, err := conflict(ctx, r, l, o, heldIDs(ctx))
		if err != nil {
			return nil, errors.Join(err, Remove(context.WithoutCancel(ctx), r, l.ID))
		}
		if holder == nil {
			return &held{r: r, o: o, cur: l, ids: map[id.ID]bool{l.ID: true}, last: l.Refreshed}, nil
		}
		if !keep {
			if err := Remove(ctx, r, l.ID); err != nil {
				return nil, err
			}
			written = false
		}
		// Jitter keeps two takers that withdrew at once from meeting again.
		d := delay/2 + rand.N(delay/2+1)
		delay = min(2*delay, o.RetryMax)
		select {
		case <-time.After(d):
		case <-wctx.Done():
			if written {
				_ = Remove(context.WithoutCancel(ctx), r, l.ID)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, &LockedError{Holder: *holder, Kind: kind, Purpose: purpose}
		}
	}
}

// conflict finds a live lock that l may not coexist with. keep says l may stay stored while waiting: of two
// prunes planning at once, the one with the lower lock ID stays and the other withdraws, so exactly one of
// them goes on.
func conflict(ctx context.Context, r *repo.Repository, l Lock, o Options, mine map[id.ID]bool) (holder *Lock, keep bool, err error) {
	entries, err := List(ctx, r)
	if err != nil {
		return nil, false, err
	}
	now := r.Now()
	keep = true
	for _, e := range entries {
		if e.ID == l.ID || mine[e.ID] || e.Unreadable != "" || o.StaleReason(e.Lock, now) != "" {
			continue
		}
		prunes := l.Purpose == PurposePrune && e.Purpose == PurposePrune
		if l.Kind != Exclusive && e.Kind != Exclusive && !prunes {
			continue
		}
		if holder == nil || e.Kind == Exclusive {
			holder = &e.Lock
		}
		// Only the lower of two shared prune locks waits in place; every other conflict withdraws.
		if !(prunes && l.Kind == Shared && e.Kind == Shared && id.Compare(l.ID, e.ID) < 0) {
			keep = false
		}
	}
	return holder, keep && holder != nil, nil
}

// heartbeat refreshes the lock every refresh interval until stop closes. When the last refresh is older
// than the stale timeout minus one refresh interval, the next check could come too late, so it cancels the
// work instead.
func (h *held) heartbeat(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	t := time.NewTicker(h.o.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.lost(); err != nil {
			cancel(err)
			return
		}
		// A failed refresh is retried at the next tick; the age check above bounds how long that may go on.
		_ = h.refresh(ctx)
	}
}

// refresh writes the lock anew with the current time, then deletes the previous object: writers never
// overwrite, so a reader never sees a half-written lock.
func (h *held) refresh(ctx context.Context) error {
	h.mu.Lock()
	next := h.cur
	h.mu.Unlock()
	next.ID = id.Random()
	next.Refreshed = h.r.Now()
	h.mu.Lock()
	h.ids[next.ID] = true // before it is stored, so nested takers never see it as another's
	h.mu.Unlock()
	if err := save(ctx, h.r, next); err != nil {
		h.mu.Lock()
		delete(h.ids, next.ID)
		h.mu.Unlock()
		return err
	}
	h.mu.Lock()
	prev := h.cur
	h.cur, h.last = next, next.Refreshed
	h.mu.Unlock()
	if err := Remove(ctx, h.r, prev.ID); err != nil {
		return err // the old object stays in ids and goes at release
	}
	h.mu.Lock()
	delete(h.ids, prev.ID)
	h.mu.Unlock()
	return nil
}

// release deletes every object of the lock, with a bounded time of its own so a cancelled caller still
// leaves no lock behind.
func (h *held) release(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	for i := range h.ids {
		if err := Remove(rctx, h.r, i); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(h.ids, i)
	}
	return errors.Join(errs...)
}

// Verify reports ErrLockLost when a lock held up the context may already look stale to others: its last
// refresh is older than the stale timeout minus one refresh interval. The heartbeat notices that only at its
// next tick, so a process that was paused (SIGSTOP, a frozen VM) checks here before a step that prune must
// not miss, such as saving a snapshot. Without a lock in the context it reports nothing.
func Verify(ctx context.Context) error {
	for _, h := range heldFrom(ctx) {
		if err := h.lost(); err != nil {
			return err
		}
	}
	return nil
}

// lost reports ErrLockLost once the last refresh is older than the stale timeout minus one refresh interval:
// the next heartbeat could come too late, and others may treat the lock as stale by then.
func (h *held) lost() error {
	h.mu.Lock()
	last, purpose := h.last, h.cur.Purpose
	h.mu.Unlock()
	if age := h.r.Now().Sub(last); age > h.o.StaleTimeout-h.o.RefreshInterval {
		return fmt.Errorf("%w: the %s lock was last refreshed %s ago (stale after %s)", ErrLockLost, purpose, age.Round(time.Second), h.o.StaleTimeout)
	}
	return nil
}
