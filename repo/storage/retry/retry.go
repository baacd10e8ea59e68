// Package retry wraps a storage.Backend so that failures an object store recovers from (5xx, throttling,
// connection resets, timeouts, cut-off bodies) are repeated with exponential backoff and full jitter, and
// those it does not (missing objects, denied access, cancellation) fail at once. Which is which follows the
// error contract in package storage.
package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/straddle-io/straddle/repo/storage"
)

// Defaults suit object storage over a network: about two minutes of retrying spread over eight attempts.
const (
	DefaultMaxAttempts    = 8
	DefaultMaxElapsed     = 2 * time.Minute
	DefaultInitialBackoff = 200 * time.Millisecond
	DefaultMaxBackoff     = 15 * time.Second
	DefaultRequestTimeout = 2 * time.Minute
	DefaultStallTimeout   = 30 * time.Second
)

// Options tune retrying; zero values mean the defaults.
type Options struct {
	// MaxAttempts is how many attempts one operation makes at most, the first included.
	MaxAttempts int
	// MaxElapsed stops retrying once this long has passed since the operation's first failure.
	MaxElapsed time.Duration
	// InitialBackoff is the largest delay before the first retry; it doubles per retry up to MaxBackoff, and
	// the delay is drawn uniformly below it (full jitter), so clients that failed together spread out.
	InitialBackoff, MaxBackoff time.Duration
	// RequestTimeout bounds one attempt of Put, Stat, List and Delete, and of Get until its body starts;
	// negative means no timeout.
	RequestTimeout time.Duration
	// StallTimeout aborts and resumes a Get body that delivers no byte for this long; negative means never.
	StallTimeout time.Duration
	// OnRetry, when set, is called before each retry, e.g. to log it.
	OnRetry func(Event)

	// Now, Sleep and Jitter are seams for tests; nil means the real clock, a context-aware sleep and a
	// uniform random duration in [0, max].
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(max time.Duration) time.Duration
}

// Event describes one failed attempt that is about to be retried.
type Event struct {
	// Op is the operation ("put", "get", "stat", "list", "delete") and Name its object or prefix.
	Op, Name string
	// Attempt is the number of the attempt that failed, from 1.
	Attempt int
	// Offset is where a Get resumes.
	Offset int64
	Err    error
	// Delay is how long the retry waits.
	Delay time.Duration
}

// GaveUpError is returned when an operation ran out of attempts or time; it wraps the last error.
type GaveUpError struct {
	Op, Name string
	Attempts int
	Elapsed  time.Duration
	Err      error
}

func (e *GaveUpError) Error() string {
	msg := e.Err.Error()
	prefix := ""
	if !strings.Contains(msg, e.Name) {
		prefix = e.Op + " " + e.Name + ": "
	}
	return fmt.Sprintf("%sstorage gave up after %d attempts in %s: %s", prefix, e.Attempts, e.Elapsed.Round(time.Millisecond), msg)
}

// Unwrap returns the last error.
func (e *GaveUpError) Unwrap() error { return e.Err }

// ErrStalled is the error of a Get body that delivered nothing for the stall timeout.
var ErrStalled = errors.New("read stalled")

// Backend retries the operations of the backend it embeds. It is safe for concurrent use.
type Backend struct {
	storage.Backend
	opts    Options
	retries atomic.Uint64
}

var _ storage.Backend = (*Backend)(nil)

// New wraps inner, filling defaults and rejecting options out of range.
func New(inner storage.Backend, opts Options) (*Backend, error) {
	if inner == nil {
		return nil, errors.New("retry: no backend to wrap")
	}
	if opts.MaxAttempts < 0 || opts.MaxElapsed < 0 || opts.InitialBackoff < 0 || opts.MaxBackoff < 0 {
		return nil, fmt.Errorf("retry: negative budget or backoff in %+v", opts)
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.MaxElapsed == 0 {
		opts.MaxElapsed = DefaultMaxElapsed
	}
	if opts.InitialBackoff == 0 {
		opts.InitialBackoff = DefaultInitialBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.MaxBackoff < opts.InitialBackoff {
		return nil, fmt.Errorf("retry: max backoff %s below initial backoff %s", opts.MaxBackoff, opts.InitialBackoff)
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = DefaultStallTimeout
	}
	if opts.OnRetry == nil {
		opts.OnRetry = func(Event) {}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	if opts.Jitter == nil {
		opts.Jitter = func(max time.Duration) time.Duration { return rand.N(max + 1) }
	}
	return &Backend{Backend: inner, opts: opts}, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() storage.Backend { return b.Backend }

// Retries returns how many retries (attempts after a failure, and Get resumes) this backend has made.
func (b *Backend) Retries() uint64 { return b.retries.Load() }

// IsRetryable reports whether err is worth the same request again, by the contract in package storage.
// Cancellation and deadlines of the caller's context are never retryable.
func IsRetryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrPermission),
		errors.Is(err, storage.ErrNoBucket), errors.Is(err, storage.ErrInvalidName):
		return false
	case errors.Is(err, storage.ErrTransient), errors.Is(err, storage.ErrTruncated), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNABORTED),
		errors.Is(err, syscall.EPIPE), errors.Is(err, ErrStalled):
		return true
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return true
	}
	// net/http reports a connection the server closed before answering as io.EOF inside a *url.Error.
	if ue, ok := errors.AsType[*url.Error](err); ok && errors.Is(ue.Err, io.EOF) {
		return true
	}
	return false
}

// retryable is IsRetryable for an attempt made under ctx: while ctx is alive, a deadline or cancellation can
// only come from this wrapper's per-attempt timeout, which is worth retrying.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	return IsRetryable(err)
}

// budget tracks one operation's failures.
type budget struct {
	failures  int
	firstFail time.Time
}

// wait decides after a retryable failure whether to try again: it returns nil after the backoff, or the
// error to give up with.
func (b *Backend) wait(ctx context.Context, bu *budget, op, name string, offset int64, err error) error {
	bu.failures++
	now := b.opts.Now()
	if bu.failures == 1 {
		bu.firstFail = now
	}
	elapsed := now.Sub(bu.firstFail)
	if bu.failures >= b.opts.MaxAttempts || elapsed >= b.opts.MaxElapsed {
		return &GaveUpError{Op: op, Name: name, Attempts: bu.failures, Elapsed: elapsed, Err: err}
	}
	ceiling := b.opts.MaxBackoff
	if shift := bu.failures - 1; shift < 32 && b.opts.InitialBackoff<<shift < ceiling {
		ceiling = b.opts.InitialBackoff << shift
	}
	delay := b.opts.Jitter(ceiling)
	b.retries.Add(1)
	b.opts.OnRetry(Event{Op: op, Name: name, Attempt: bu.failures, Offset: offset, Err: err, Delay: delay})
	if serr := b.opts.Sleep(ctx, delay); serr != nil {
		return fmt.Errorf("%s %s: %w while waiting to retry after %d failed attempts (last: %v)", op, name, serr, bu.failures, err)
	}
	return nil
}

// permanent marks an error that must not be retried whatever it wraps, such as one a List callback returned.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }

// do runs f until it succeeds, fails for good, or the budget runs out.
func (b *Backend) do(ctx context.Context, op, name string, f func(ctx context.Context) error) error {
	var bu budget
	for {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if b.opts.RequestTimeout > 0 {
			actx, cancel = context.WithTimeout(ctx, b.opts.RequestTimeout)
		}
		err := f(actx)
		cancel()
		if err == nil {
			return nil
		}
		if p, ok := errors.AsType[permanent](err); ok {
			return p.err
		}
		if !retryable(ctx, err) {
			return err
		}
		if err := b.wait(ctx, &bu, op, name, 0, err); err != nil {
			return err
		}
	}
}

// Put stores the object, re-reading body from offset 0 on each attempt.
func (b *Backend) Put(ctx context.Context, name string, body io.ReaderAt, size int64) error {
	return b.do(ctx, "put", name, func(ctx context.Context) error { return b.Backend.Put(ctx, name, body, size) })
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (storage.Info, error) {
	var fi storage.Info
	err := b.do(ctx, "stat", name, func(ctx context.Context) error {
		var err error
		fi, err = b.Backend.Stat(ctx, name)
		return err
	})
	return fi, err
}

// Delete removes the object; a retry after a lost response finds it gone, which is not an error.
func (b *Backend) Delete(ctx context.Context, name string) error {
	return b.do(ctx, "delete", name, func(ctx context.Context) error { return b.Backend.Delete(ctx, name) })
}

// List lists again after a failure part way, calling fn only for objects it has not been called for yet.
// An error from fn is returned as it is, never retried.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	seen := map[string]bool{}
	return b.do(ctx, "list", prefix, func(ctx context.Context) error {
		var fnErr error
		err := b.Backend.List(ctx, prefix, func(fi storage.Info) error {
			if seen[fi.Name] {
				return nil
			}
			seen[fi.Name] = true
			if err := fn(fi); err != nil {
				fnErr = err
				return err
			}
			return nil
		})
		if fnErr != nil {
			return permanent{fnErr}
		}
		return err
	})
}
