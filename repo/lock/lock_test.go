package lock

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage"
)

// clock is a settable clock for the repository handles of a test.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// openWith opens the repository in be as another process would, with its own clock.
func openWith(t *testing.T, be storage.Backend, now func() time.Time) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, []byte(repotest.Password), repo.OpenOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fast is the options of a test process: millisecond backoff, a fixed identity whose process is alive.
func fast(pid int) Options {
	return Options{RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond, Host: "node-a", PID: pid, User: "tester",
		ProcessAlive: func(int) bool { return true }}
}

func countLocks(t *testing.T, r *repo.Repository) int {
	t.Helper()
	es, err := List(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// hold takes a lock in the background and keeps it until the returned function is called.
func hold(t *testing.T, r *repo.Repository, kind Kind, purpose string, o Options) (release func()) {
	t.Helper()
	taken, done, stop := make(chan struct{}), make(chan error, 1), make(chan struct{})
	go func() {
		done <- WithLock(context.Background(), r, kind, purpose, o, func(ctx context.Context) error {
			close(taken)
			<-stop
			return nil
		})
	}()
	select {
	case <-taken:
	case err := <-done:
		t.Fatalf("take %s lock: %v", kind, err)
	}
	return func() {
		close(stop)
		if err := <-done; err != nil {
			t.Errorf("release %s lock: %v", kind, err)
		}
	}
}

func TestSharedLocksCoexist(t *testing.T) {
	r, _ := repotest.New(t)
	release := hold(t, r, Shared, "backup", fast(100))
	err := WithLock(context.Background(), r, Shared, "restore", fast(200), func(ctx context.Context) error {
		if n := countLocks(t, r); n != 2 {
			t.Errorf("%d locks while two shared ones are held, want 2", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a shared lock beside another: %v", err)
	}
	release()
	if n := countLocks(t, r); n != 0 {
		t.Errorf("%d locks left after release", n)
	}
}

func TestExclusiveWaitsForSharedThenFailsNamingTheHolder(t *testing.T) {
	r, _ := repotest.New(t)
	release := hold(t, r, Shared, "backup", fast(4242))
	o := fast(7)
	o.WaitTimeout = 50 * time.Millisecond
	start := time.Now()
	ran := false
	err := WithLock(context.Background(), r, Exclusive, "prune", o, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, ErrLocked) || ran {
		t.Fatalf("exclusive beside a live shared lock: err %v, ran %v", err, ran)
	}
	if waited := time.Since(start); waited < o.WaitTimeout {
		t.Errorf("gave up after %v, before the wait timeout %v", waited, o.WaitTimeout)
	}
	for _, want := range []string{"locked by backup on host node-a pid 4242 since 2", "prune needs it exclusively"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := countLocks(t, r); n != 1 {
		t.Errorf("%d locks after the failed attempt, want only the shared one", n)
	}

	// Once the shared lock goes within the wait, the exclusive one is taken.
	o.WaitTimeout = 10 * time.Second
	go func() { time.Sleep(20 * time.Millisecond); release() }()
	if err := WithLock(context.Background(), r, Exclusive, "prune", o, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("exclusive after the shared lock was released: %v", err)
	}
}

func TestSharedFailsBesideExclusive(t *testing.T) {
	r, _ := repotest.New(t)
	release := hold(t, r, Exclusive, "prune", fast(31))
	defer release()
	err := WithLock(context.Background(), r, Shared, "backup", fast(32), func(context.Context) error { return nil })
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "locked exclusively by prune on host node-a pid 31 since ") {
		t.Fatalf("shared beside an exclusive lock: %v", err)
	}
}

// A holder that stops refreshing (here: a long refresh interval) is live until the stale timeout has passed
// on the clock of the one looking, and ignored after.
func TestLockBecomesStaleWhenNotRefreshed(t *testing.T) {
	clk := newClock()
	_, be := repotest.New(t)
	holder := openWith(t, be, clk.Now)
	o := fast(500)
	o.RefreshInterval = 10 * time.Minute // never comes during the test; the stale timeout is the default 30 min
	release := hold(t, holder, Shared, "backup", o)
	defer release()

	other := openWith(t, be, clk.Now)
	clk.Advance(DefaultStaleTimeout - time.Minute)
	if err := WithLock(context.Background(), other, Exclusive, "prune", fast(501), func(context.Context) error { return nil }); !errors.Is(err, ErrLocked) {
		t.Fatalf("before the stale timeout: %v, want ErrLocked", err)
	}
	clk.Advance(2 * time.Minute)
	if err := WithLock(context.Background(), other, Exclusive, "prune", fast(501), func(context.Context) error { return nil }); err != nil {
		t.Fatalf("after the stale timeout the lock must be ignored: %v", err)
	}
}

func TestLockOfDeadProcessOnThisHostIsStale(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run a process: %v", err)
	}
	dead := cmd.Process.Pid
	host, _ := os.Hostname()
	r, _ := repotest.New(t)
	now := r.Now()
	if err := save(context.Background(), r, Lock{ID: id.Random(), Kind: Exclusive, Purpose: "prune", Host: host, PID: dead, Created: now, Refreshed: now}); err != nil {
		t.Fatal(err)
	}
	// Default options: this host's name and the real process table.
	if err := WithLock(context.Background(), r, Shared, "backup", Options{}, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("a lock of dead pid %d on this host must be stale at once: %v", dead, err)
	}
	// The same lock seen from another host is live: its process cannot be looked up there.
	o := fast(1)
	o.Host = "elsewhere"
	if err := WithLock(context.Background(), r, Shared, "backup", o, func(context.Context) error { return nil }); !errors.Is(err, ErrLocked) {
		t.Fatalf("from another host: %v, want ErrLocked", err)
	}
}

func TestRefreshReplacesTheLockObject(t *testing.T) {
	clk := newClock()
	_, be := repotest.New(t)
	r := openWith(t, be, func() time.Time { clk.Advance(time.Second); return clk.Now() })
	o := fast(9)
	o.RefreshInterval, o.StaleTimeout = 2*time.Millisecond, time.Hour
	err := WithLock(context.Background(), r, Shared, "backup", o, func(ctx context.Context) error {
		first, err := List(ctx, r)
		if err != nil || len(first) != 1 {
			t.Fatalf("locks %v, %v", first, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
			now, err := List(ctx, r)
			if err != nil {
				return err
			}
			for _, e := range now {
				if e.ID != first[0].ID {
					if !e.Refreshed.After(first[0].Refreshed) || !e.Created.Equal(first[0].Created) {
						t.Errorf("refreshed lock %+v, first %+v", e.Lock, first[0].Lock)
					}
					if e.Purpose != "backup" || e.Kind != Shared || e.PID != 9 || e.User != "tester" {
						t.Errorf("refreshed lock lost its fields: %+v", e.Lock)
					}
					return nil
				}
			}
		}
		t.Error("the lock object was never replaced")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := countLocks(t, r); n != 0 {
		t.Errorf("%d lock objects left after release", n)
	}
}

// failLockPuts fails every write under locks/ once armed, as an unreachable store would.
type failLockPuts struct {
	storage.Backend
	armed atomic.Bool
}

func (f *failLockPuts) Put(ctx context.Context, name string, body io.ReaderAt, size int64) error {
	if f.armed.Load() && strings.HasPrefix(name, prefix) {
		return errors.New("injected: storage unreachable")
	}
	return f.Backend.Put(ctx, name, body, size)
}

func TestHolderThatCannotRefreshCancelsItsWork(t *testing.T) {
	clk := newClock()
	_, mem := repotest.New(t)
	be := &failLockPuts{Backend: mem}
	// Each reading of the clock moves it a minute: refreshes keep failing while time passes.
	r := openWith(t, be, func() time.Time { clk.Advance(time.Minute); return clk.Now() })
	o := fast(3)
	o.RefreshInterval, o.StaleTimeout = time.Millisecond, 10*time.Minute
	err := WithLock(context.Background(), r, Shared, "backup", o, func(ctx context.Context) error {
		be.armed.Store(true)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Second):
			return errors.New("the work was not cancelled")
		}
	})
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("err %v, want ErrLockLost", err)
	}
}

func TestUnlockRemovesOnlyStaleLocks(t *testing.T) {
	clk := newClock()
	_, be := repotest.New(t)
	r := openWith(t, be, clk.Now)
	ctx := context.Background()
	now := clk.Now()
	live := Lock{ID: id.Random(), Kind: Shared, Purpose: "backup", Host: "node-b", PID: 10, Created: now, Refreshed: now}
	old := Lock{ID: id.Random(), Kind: Exclusive, Purpose: "prune", Host: "node-c", PID: 11, Created: now.Add(-2 * time.Hour), Refreshed: now.Add(-time.Hour)}
	dead := Lock{ID: id.Random(), Kind: Shared, Purpose: "check", Host: "node-a", PID: 12, Created: now, Refreshed: now}
	for _, l := range []Lock{live, old, dead} {
		if err := save(ctx, r, l); err != nil {
			t.Fatal(err)
		}
	}
	garbage := id.Random()
	if err := storage.PutBytes(ctx, be, prefix+garbage.String(), []byte("not a lock")); err != nil {
		t.Fatal(err)
	}
	o := Options{Host: "node-a", PID: 1, ProcessAlive: func(pid int) bool { return pid != 12 }}

	verdicts, err := Unlock(ctx, r, o, false, true)
	if err != nil || len(verdicts) != 4 || countLocks(t, r) != 4 {
		t.Fatalf("dry run: %d verdicts, %v; %d locks left", len(verdicts), err, countLocks(t, r))
	}
	verdicts, err = Unlock(ctx, r, o, false, false)
	if err != nil {
		t.Fatal(err)
	}
	removed := map[id.ID]string{}
	for _, v := range verdicts {
		if v.Removed {
			removed[v.ID] = v.Stale
		} else if v.ID != live.ID {
			t.Errorf("kept %v: %s", v.ID.Short(), v.Stale)
		}
	}
	if _, ok := removed[live.ID]; ok {
		t.Error("removed the live lock")
	}
	for l, why := range map[id.ID]string{old.ID: "not refreshed for 1h0m0s", dead.ID: "process 12 no longer runs", garbage: "authentication failed"} {
		if !strings.Contains(removed[l], why) {
			t.Errorf("lock %s: removed with reason %q, want %q", l.Short(), removed[l], why)
		}
	}
	if n := countLocks(t, r); n != 1 {
		t.Errorf("%d locks left, want the live one", n)
	}
	if _, err := Unlock(ctx, r, o, true, false); err != nil || countLocks(t, r) != 0 {
		t.Errorf("unlock --remove-all: %v, %d left", err, countLocks(t, r))
	}
}

// Two prunes starting together: exactly one plans at a time, and backups' shared locks do not stop either.
func TestOnlyOnePruneAtATime(t *testing.T) {
	r, _ := repotest.New(t)
	release := hold(t, r, Shared, "backup", fast(1))
	defer release()
	var running, most, succeeded atomic.Int32
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			o := fast(100 + i)
			o.WaitTimeout = time.Second // long enough for all four in turn, even on a loaded machine
			err := WithLock(context.Background(), r, Shared, PurposePrune, o, func(context.Context) error {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(40 * time.Millisecond)
				running.Add(-1)
				return nil
			})
			if err == nil {
				succeeded.Add(1)
			} else if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "locked by another prune") {
				t.Errorf("prune %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if most.Load() != 1 || succeeded.Load() == 0 {
		t.Errorf("%d prunes ran at once, %d succeeded; want exactly one at a time", most.Load(), succeeded.Load())
	}
}

func TestVerifyFailsOnceTheHeldLockMayLookStale(t *testing.T) {
	clk := newClock()
	_, be := repotest.New(t)
	r := openWith(t, be, clk.Now)
	if err := Verify(context.Background()); err != nil {
		t.Fatalf("without a lock: %v", err)
	}
	o := fast(600)
	o.RefreshInterval = time.Hour // no heartbeat during the test: as if the process were paused
	o.StaleTimeout = 3 * time.Hour
	err := WithLock(context.Background(), r, Shared, "backup", o, func(ctx context.Context) error {
		if err := Verify(ctx); err != nil {
			return fmt.Errorf("fresh lock: %w", err)
		}
		clk.Advance(119 * time.Minute)
		if err := Verify(ctx); err != nil {
			return fmt.Errorf("within the margin: %w", err)
		}
		clk.Advance(2 * time.Minute)
		if err := Verify(ctx); !errors.Is(err, ErrLockLost) {
			return fmt.Errorf("after stale timeout minus one refresh interval: %v, want ErrLockLost", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
