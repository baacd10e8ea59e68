package retry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/faulty"
	"github.com/straddle-io/straddle/repo/storage/mem"
	"github.com/straddle-io/straddle/repo/storage/storagetest"
)

// clock is a fake time that only moves when the wrapper sleeps, so budgets are tested without waiting.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Sleep(ctx context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.sleeps = append(c.sleeps, d)
	return ctx.Err()
}

// newTest wraps a fresh memory backend in faulty (no random faults) and retry with a fake clock. Timeouts are
// off unless opts sets them: on a loaded machine a tight one would fire on healthy calls and add retries.
func newTest(t *testing.T, opts Options) (*Backend, *faulty.Backend, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	// Random faults (used by the budget tests) are ones that fail at once; scheduled ones can be any kind.
	fb := faulty.New(mem.New(), faulty.Options{StallFor: 10 * time.Second, Kinds: []faulty.Kind{faulty.Transient, faulty.Reset, faulty.Timeout}})
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = clk.Sleep
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = -1
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = -1
	}
	rb, err := New(fb, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rb, fb, clk
}

func TestRetryableFaultsAreRetried(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("0123456789"), 10000)
	type call func(be storage.Backend) error
	ops := map[faulty.Op]call{
		faulty.OpPut: func(be storage.Backend) error { return storage.PutBytes(ctx, be, "data/00/obj", data) },
		faulty.OpGet: func(be storage.Backend) error {
			got, err := storage.ReadAll(ctx, be, "data/00/obj")
			if err == nil && !bytes.Equal(got, data) {
				err = fmt.Errorf("read %d bytes that differ from the %d stored", len(got), len(data))
			}
			return err
		},
		faulty.OpStat: func(be storage.Backend) error {
			fi, err := be.Stat(ctx, "data/00/obj")
			if err == nil && fi.Size != int64(len(data)) {
				err = fmt.Errorf("size %d", fi.Size)
			}
			return err
		},
		faulty.OpList: func(be storage.Backend) error {
			n := 0
			err := be.List(ctx, "data/", func(storage.Info) error { n++; return nil })
			if err == nil && n != 1 {
				err = fmt.Errorf("listed %d objects, want 1", n)
			}
			return err
		},
		faulty.OpDelete: func(be storage.Backend) error { return be.Delete(ctx, "data/00/other") },
	}
	for op, fn := range ops {
		for _, kind := range faulty.RetryableKinds {
			if !appliesTo(kind, op) {
				continue
			}
			t.Run(fmt.Sprintf("%s/%s", op, kind), func(t *testing.T) {
				var events []Event
				opts := Options{OnRetry: func(e Event) { events = append(events, e) }}
				if kind == faulty.Stall || kind == faulty.BodyStall {
					opts.RequestTimeout, opts.StallTimeout = stallTimeout, stallTimeout
				}
				rb, fb, _ := newTest(t, opts)
				if err := storage.PutBytes(ctx, fb.Unwrap(), "data/00/obj", data); err != nil {
					t.Fatal(err)
				}
				fb.FailNext(op, kind, kind)
				if err := fn(rb); err != nil {
					t.Fatalf("%s with two %s faults: %v", op, kind, err)
				}
				if got := fb.Injected(kind); got != 2 {
					t.Fatalf("injected %d faults, want 2", got)
				}
				if rb.Retries() != 2 || len(events) != 2 {
					t.Fatalf("Retries() = %d, %d events; want 2", rb.Retries(), len(events))
				}
				if events[0].Op != string(op) || events[0].Attempt != 1 || events[1].Attempt != 2 || events[0].Err == nil {
					t.Fatalf("events = %+v", events)
				}
			})
		}
	}
}

// stallTimeout is long enough that healthy calls on a loaded machine do not hit it, short enough for a test.
const stallTimeout = 200 * time.Millisecond

func appliesTo(k faulty.Kind, op faulty.Op) bool {
	switch k {
	case faulty.LostResponse:
		return op == faulty.OpPut || op == faulty.OpDelete
	case faulty.BodyReset, faulty.BodyTruncate, faulty.BodyStall:
		return op == faulty.OpGet
	}
	return true
}

func TestNonRetryableFailAtOnce(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []faulty.Kind{faulty.Permission, faulty.NotFound} {
		t.Run(kind.String(), func(t *testing.T) {
			rb, fb, _ := newTest(t, Options{})
			fb.FailNext(faulty.OpPut, kind)
			err := storage.PutBytes(ctx, rb, "config", []byte("x"))
			want := map[faulty.Kind]error{faulty.Permission: storage.ErrPermission, faulty.NotFound: storage.ErrNotFound}[kind]
			if !errors.Is(err, want) || !errors.Is(err, faulty.ErrInjected) {
				t.Fatalf("err = %v, want the injected %v", err, want)
			}
			if fb.Calls(faulty.OpPut) != 1 || rb.Retries() != 0 {
				t.Fatalf("%d calls, %d retries; want 1 and 0", fb.Calls(faulty.OpPut), rb.Retries())
			}
		})
	}
	t.Run("missing object", func(t *testing.T) {
		rb, fb, _ := newTest(t, Options{})
		if _, err := rb.Get(ctx, "snapshots/none", 0, -1); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("err = %v", err)
		}
		if fb.Calls(faulty.OpGet) != 1 {
			t.Fatalf("%d calls", fb.Calls(faulty.OpGet))
		}
	})
	t.Run("invalid name", func(t *testing.T) {
		rb, fb, _ := newTest(t, Options{})
		if err := storage.PutBytes(ctx, rb, "a/../b", nil); !errors.Is(err, storage.ErrInvalidName) {
			t.Fatalf("err = %v", err)
		}
		if fb.Calls(faulty.OpPut) != 1 {
			t.Fatalf("%d calls", fb.Calls(faulty.OpPut))
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		rb, fb, _ := newTest(t, Options{})
		cctx, cancel := context.WithCancel(ctx)
		// The sleep before the first retry notices the cancellation.
		rb.opts.Sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
		fb.FailNext(faulty.OpStat, faulty.Transient, faulty.Transient)
		_, err := rb.Stat(cctx, "config")
		if !errors.Is(err, context.Canceled) || fb.Calls(faulty.OpStat) != 1 {
			t.Fatalf("err = %v after %d calls, want context.Canceled after 1", err, fb.Calls(faulty.OpStat))
		}
		// A context cancelled before the call is not retried either.
		rb.opts.RequestTimeout = stallTimeout
		fb.FailNext(faulty.OpStat, faulty.Stall)
		if _, err := rb.Stat(cctx, "config"); !errors.Is(err, context.Canceled) || fb.Calls(faulty.OpStat) != 2 {
			t.Fatalf("err = %v after %d calls", err, fb.Calls(faulty.OpStat))
		}
	})
	t.Run("list callback error", func(t *testing.T) {
		rb, fb, _ := newTest(t, Options{})
		_ = storage.PutBytes(ctx, fb.Unwrap(), "index/a", nil)
		mine := storage.Transient(errors.New("callback failed"))
		if err := rb.List(ctx, "index/", func(storage.Info) error { return mine }); err != mine {
			t.Fatalf("err = %v, want the callback's error unchanged", err)
		}
		if fb.Calls(faulty.OpList) != 1 {
			t.Fatalf("%d calls", fb.Calls(faulty.OpList))
		}
	})
}

func TestBudgets(t *testing.T) {
	ctx := context.Background()
	t.Run("attempts", func(t *testing.T) {
		rb, fb, _ := newTest(t, Options{MaxAttempts: 4})
		fb.SetRate(1)
		err := storage.PutBytes(ctx, rb, "data/00/x", []byte("x"))
		var gu *GaveUpError
		if !errors.As(err, &gu) || gu.Attempts != 4 || !strings.Contains(err.Error(), "after 4 attempts") {
			t.Fatalf("err = %v, want a GaveUpError after 4 attempts", err)
		}
		if fb.Calls(faulty.OpPut) != 4 || rb.Retries() != 3 {
			t.Fatalf("%d calls, %d retries; want 4 and 3", fb.Calls(faulty.OpPut), rb.Retries())
		}
		if !errors.Is(err, faulty.ErrInjected) {
			t.Fatalf("err = %v does not wrap the last failure", err)
		}
	})
	t.Run("elapsed", func(t *testing.T) {
		rb, fb, clk := newTest(t, Options{MaxAttempts: 100, MaxElapsed: 10 * time.Second, InitialBackoff: time.Second, MaxBackoff: 4 * time.Second,
			Jitter: func(max time.Duration) time.Duration { return max }})
		fb.SetRate(1)
		_, err := rb.Stat(ctx, "config")
		var gu *GaveUpError
		if !errors.As(err, &gu) || gu.Elapsed < 10*time.Second {
			t.Fatalf("err = %v, want giving up after 10s", err)
		}
		// 1+2+4+4 = 11s: the fifth failure comes after the budget.
		if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}; fmt.Sprint(clk.sleeps) != fmt.Sprint(want) {
			t.Fatalf("slept %v, want %v", clk.sleeps, want)
		}
		if gu.Attempts != 5 {
			t.Fatalf("gave up after %d attempts, want 5", gu.Attempts)
		}
	})
	t.Run("full jitter", func(t *testing.T) {
		var ceilings []time.Duration
		rb, fb, clk := newTest(t, Options{MaxAttempts: 6, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
			Jitter: func(max time.Duration) time.Duration { ceilings = append(ceilings, max); return max / 2 }})
		fb.SetRate(1)
		_ = rb.Delete(ctx, "locks/x")
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second}
		if fmt.Sprint(ceilings) != fmt.Sprint(want) {
			t.Fatalf("backoff ceilings %v, want %v", ceilings, want)
		}
		if clk.sleeps[0] != 50*time.Millisecond {
			t.Fatalf("slept %v, want the jittered delays", clk.sleeps)
		}
	})
	t.Run("default jitter stays below the ceiling", func(t *testing.T) {
		rb, _, _ := newTest(t, Options{})
		for range 1000 {
			if d := rb.opts.Jitter(time.Second); d < 0 || d > time.Second {
				t.Fatalf("jitter %v outside [0, 1s]", d)
			}
		}
	})
}

func TestOptionsValidated(t *testing.T) {
	for _, o := range []Options{{MaxAttempts: -1}, {MaxElapsed: -time.Second}, {InitialBackoff: time.Minute, MaxBackoff: time.Second}} {
		if _, err := New(mem.New(), o); err == nil {
			t.Errorf("New accepted %+v", o)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New accepted a nil backend")
	}
}

// recorder logs the ranges asked of Get.
type recorder struct {
	storage.Backend
	mu     sync.Mutex
	ranges [][2]int64
}

func (r *recorder) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	r.mu.Lock()
	r.ranges = append(r.ranges, [2]int64{offset, length})
	r.mu.Unlock()
	return r.Backend.Get(ctx, name, offset, length)
}

func TestGetResumesWhereTheBodyBroke(t *testing.T) {
	ctx := context.Background()
	data := make([]byte, 4<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	for _, kind := range []faulty.Kind{faulty.BodyReset, faulty.BodyTruncate, faulty.BodyStall} {
		for _, rg := range [][2]int64{{0, -1}, {1000, 3 << 20}} {
			t.Run(fmt.Sprintf("%s/%d+%d", kind, rg[0], rg[1]), func(t *testing.T) {
				m := mem.New()
				_ = storage.PutBytes(ctx, m, "data/ab/pack", data)
				rec := &recorder{Backend: m}
				fb := faulty.New(rec, faulty.Options{Seed: 7, StallFor: 10 * time.Second})
				var events []Event
				clk := &clock{}
				stall := time.Duration(-1)
				if kind == faulty.BodyStall {
					stall = stallTimeout
				}
				rb, err := New(fb, Options{Now: clk.Now, Sleep: clk.Sleep, RequestTimeout: -1, StallTimeout: stall, OnRetry: func(e Event) { events = append(events, e) }})
				if err != nil {
					t.Fatal(err)
				}
				fb.FailNext(faulty.OpGet, kind, kind)
				start := time.Now()
				got, err := storage.ReadRange(ctx, rb, "data/ab/pack", rg[0], rg[1])
				if err != nil {
					t.Fatal(err)
				}
				want := data[rg[0]:]
				if rg[1] >= 0 {
					want = want[:rg[1]]
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("read %d bytes that differ from the %d wanted", len(got), len(want))
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("took %v: a stall was waited out instead of aborted", time.Since(start))
				}
				if len(rec.ranges) != 3 || len(events) != 2 {
					t.Fatalf("requests %v, events %d; want 3 requests", rec.ranges, len(events))
				}
				// Each resumed request starts where the previous body broke and asks for exactly the rest.
				for i, e := range events {
					next := rec.ranges[i+1]
					if next[0] != e.Offset || next[0] <= rec.ranges[i][0] {
						t.Fatalf("request %d at %d, retry event at %d, previous at %d", i+1, next[0], e.Offset, rec.ranges[i][0])
					}
					if rg[1] >= 0 && next[0]+next[1] != rg[0]+rg[1] {
						t.Fatalf("request %d asks [%d,+%d), want up to %d", i+1, next[0], next[1], rg[0]+rg[1])
					}
					if rg[1] < 0 && next[1] != -1 {
						t.Fatalf("request %d asks %d bytes, want to the end", i+1, next[1])
					}
				}
			})
		}
	}
}

func TestGetResumesWithinTheBudget(t *testing.T) {
	ctx := context.Background()
	rb, fb, _ := newTest(t, Options{MaxAttempts: 3})
	_ = storage.PutBytes(ctx, fb.Unwrap(), "data/00/p", bytes.Repeat([]byte("y"), 1<<20))
	fb.FailNext(faulty.OpGet, faulty.BodyReset, faulty.Transient, faulty.BodyReset, faulty.BodyReset)
	_, err := storage.ReadAll(ctx, rb, "data/00/p")
	var gu *GaveUpError
	if !errors.As(err, &gu) || gu.Attempts != 3 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v, want giving up after 3 attempts with the last reset", err)
	}
}

func TestShortObjectIsNotRetried(t *testing.T) {
	ctx := context.Background()
	rb, fb, _ := newTest(t, Options{})
	_ = storage.PutBytes(ctx, fb.Unwrap(), "data/00/p", []byte("short"))
	if _, err := storage.ReadRange(ctx, rb, "data/00/p", 0, 100); !errors.Is(err, storage.ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if fb.Calls(faulty.OpGet) != 1 || rb.Retries() != 0 {
		t.Fatalf("%d Gets, %d retries for an object that is simply short", fb.Calls(faulty.OpGet), rb.Retries())
	}
	// A backend that refuses a range past the end (S3 answers 416) is not asked again either.
	short := &pastEnd{Backend: fb}
	rb2, _ := New(short, Options{})
	if _, err := rb2.Get(ctx, "data/00/p", 100, 10); !errors.Is(err, storage.ErrTruncated) || short.calls != 1 {
		t.Fatalf("err = %v after %d calls, want ErrTruncated after 1", err, short.calls)
	}
}

// pastEnd refuses every Get as a range past the end of the object.
type pastEnd struct {
	storage.Backend
	calls int
}

func (p *pastEnd) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	p.calls++
	return nil, fmt.Errorf("get %s at %d: %w", name, offset, storage.ErrTruncated)
}

func TestListAfterResetSkipsWhatWasListed(t *testing.T) {
	ctx := context.Background()
	rb, fb, _ := newTest(t, Options{})
	want := map[string]bool{}
	for i := range 20 {
		name := fmt.Sprintf("index/%02d", i)
		want[name] = true
		_ = storage.PutBytes(ctx, fb.Unwrap(), name, nil)
	}
	fb.FailNext(faulty.OpList, faulty.Reset, faulty.Reset, faulty.Reset)
	seen := map[string]int{}
	if err := rb.List(ctx, "index/", func(fi storage.Info) error { seen[fi.Name]++; return nil }); err != nil {
		t.Fatal(err)
	}
	for name, n := range seen {
		if n != 1 || !want[name] {
			t.Fatalf("fn called %d times for %s", n, name)
		}
	}
	if len(seen) != len(want) || rb.Retries() != 3 {
		t.Fatalf("listed %d of %d after %d retries", len(seen), len(want), rb.Retries())
	}
}

func TestIsRetryable(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	for _, c := range []struct {
		err  error
		want bool
	}{
		{storage.Transient(errors.New("500 Internal Server Error")), true},
		{fmt.Errorf("get x: %w", io.ErrUnexpectedEOF), true},
		{fmt.Errorf("get x: %w", storage.ErrTruncated), true},
		{reset, true},
		{&url.Error{Op: "Put", URL: "http://x/b/k", Err: io.EOF}, true},
		{&url.Error{Op: "Get", URL: "http://x/b/k", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, true},
		{&net.DNSError{Err: "timeout", IsTimeout: true}, true},
		{fmt.Errorf("x: %w", ErrStalled), true},
		{fmt.Errorf("x: %w", storage.ErrNotFound), false},
		{fmt.Errorf("x: %w", storage.ErrPermission), false},
		{fmt.Errorf("x: %w", storage.ErrNoBucket), false},
		{storage.ValidName("../x"), false},
		// A backend must not mark these transient; if one does, the permanent meaning wins.
		{storage.Transient(storage.ErrNotFound), false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		{io.EOF, false},
		{errors.New("400 Bad Request"), false},
		{nil, false},
	} {
		if got := IsRetryable(c.err); got != c.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestRetriesFoundThroughWrappers(t *testing.T) {
	rb, fb, _ := newTest(t, Options{})
	fb.FailNext(faulty.OpStat, faulty.Timeout)
	_, _ = rb.Stat(context.Background(), "config")
	outer := faulty.New(rb, faulty.Options{})
	if n, ok := storage.Retries(outer); !ok || n != 1 {
		t.Fatalf("Retries through a wrapper = %d, %v", n, ok)
	}
	if _, ok := storage.Retries(mem.New()); ok {
		t.Fatal("a memory backend claims to count retries")
	}
}

// The conformance suite passes through the retry wrapper over a backend that fails one call in ten.
func TestConformanceUnderFaults(t *testing.T) {
	fb := faulty.New(mem.New(), faulty.Options{Rate: 0.1, Seed: 42, StallFor: 10 * time.Second})
	rb, err := New(fb, Options{MaxAttempts: 20, RequestTimeout: 50 * time.Millisecond, StallTimeout: 50 * time.Millisecond,
		Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Run(t, rb)
	if fb.TotalInjected() == 0 || rb.Retries() == 0 {
		t.Fatalf("injected %d faults, %d retries: the suite ran without faults", fb.TotalInjected(), rb.Retries())
	}
	t.Logf("%d faults injected, %d retries", fb.TotalInjected(), rb.Retries())
}
