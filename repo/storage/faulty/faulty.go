// Package faulty wraps a storage.Backend and makes it misbehave on purpose: errors of each kind an object store
// produces, bodies cut or stalled part way, lost responses. Faults come at a configured rate from a seeded
// random source, or on chosen calls, so tests of the retry wrapper and of the engine are repeatable.
package faulty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/straddle-io/straddle/repo/storage"
)

// Op names a Backend method.
type Op string

// The operations faults can be injected into.
const (
	OpPut    Op = "put"
	OpGet    Op = "get"
	OpStat   Op = "stat"
	OpList   Op = "list"
	OpDelete Op = "delete"
)

// AllOps are every operation, the default of Options.Ops.
var AllOps = []Op{OpPut, OpGet, OpStat, OpList, OpDelete}

// Kind is a kind of fault.
type Kind int

// The faults. Body faults apply to Get only, LostResponse to Put and Delete only; a kind that does not apply
// to an operation is never chosen for it at random.
const (
	// Transient fails the call with an error wrapping storage.ErrTransient, as a backend reports an HTTP 500
	// or 503 SlowDown.
	Transient Kind = iota
	// Reset fails the call with a connection reset (syscall.ECONNRESET inside a *net.OpError). Put reads part
	// of the body first; List delivers part of the listing first.
	Reset
	// Timeout fails the call with a net.Error whose Timeout() is true.
	Timeout
	// LostResponse performs the call and then fails with a connection reset, as when the response is lost.
	LostResponse
	// Stall holds the call until its context ends or StallFor passes, then performs it.
	Stall
	// BodyReset lets Get succeed and breaks its body part way with a connection reset.
	BodyReset
	// BodyTruncate ends the body part way with io.ErrUnexpectedEOF, as net/http reports a body shorter than
	// its Content-Length.
	BodyTruncate
	// BodyStall stops the body part way until it is closed, its context ends or StallFor passes.
	BodyStall
	// Permission fails the call with storage.ErrPermission (not retryable).
	Permission
	// NotFound fails the call with storage.ErrNotFound (not retryable).
	NotFound
	numKinds
)

var kindNames = [...]string{"transient", "reset", "timeout", "lost-response", "stall", "body-reset", "body-truncate", "body-stall", "permission", "not-found"}

func (k Kind) String() string {
	if k >= 0 && k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// RetryableKinds are the faults a retrying client must survive, the default of Options.Kinds.
var RetryableKinds = []Kind{Transient, Reset, Timeout, LostResponse, Stall, BodyReset, BodyTruncate, BodyStall}

func (k Kind) appliesTo(op Op) bool {
	switch k {
	case LostResponse:
		return op == OpPut || op == OpDelete
	case BodyReset, BodyTruncate, BodyStall:
		return op == OpGet
	}
	return true
}

// ErrInjected is wrapped by every error this package makes up, so a test can tell them from real ones.
var ErrInjected = errors.New("injected fault")

// Options configure random faults.
type Options struct {
	// Rate is the probability, 0..1, that a call gets a fault.
	Rate float64
	// Seed makes the sequence of random faults repeatable.
	Seed uint64
	// Kinds are chosen from uniformly; nil means RetryableKinds.
	Kinds []Kind
	// Ops are the operations random faults hit; nil means AllOps. Scheduled faults ignore it.
	Ops []Op
	// StallFor bounds a stall, so a client without a timeout is slowed down but not hung; default 1 minute.
	StallFor time.Duration
}

// Backend injects faults into calls to the backend it wraps. It is safe for concurrent use.
type Backend struct {
	storage.Backend
	opts Options

	mu        sync.Mutex
	rng       *rand.Rand
	rate      float64
	calls     map[Op]uint64
	scheduled map[Op]map[uint64]Kind

	injected [numKinds]atomic.Uint64
}

var _ storage.Backend = (*Backend)(nil)

// New wraps inner.
func New(inner storage.Backend, opts Options) *Backend {
	if opts.Kinds == nil {
		opts.Kinds = RetryableKinds
	}
	if opts.Ops == nil {
		opts.Ops = AllOps
	}
	if opts.StallFor <= 0 {
		opts.StallFor = time.Minute
	}
	return &Backend{
		Backend: inner, opts: opts, rate: opts.Rate,
		rng:       rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		calls:     map[Op]uint64{},
		scheduled: map[Op]map[uint64]Kind{},
	}
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() storage.Backend { return b.Backend }

// SetRate changes the probability of a random fault, e.g. to set a repository up before breaking its storage.
func (b *Backend) SetRate(rate float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rate = rate
}

// FailCall makes the n-th call of op (counting from 1 since New) fail with kind.
func (b *Backend) FailCall(op Op, n uint64, kind Kind) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.scheduled[op] == nil {
		b.scheduled[op] = map[uint64]Kind{}
	}
	b.scheduled[op][n] = kind
}

// FailNext makes the next len(kinds) calls of op fail with kinds, in order.
func (b *Backend) FailNext(op Op, kinds ...Kind) {
	b.mu.Lock()
	next := b.calls[op] + 1
	b.mu.Unlock()
	for i, k := range kinds {
		b.FailCall(op, next+uint64(i), k)
	}
}

// Calls returns how many times op was called.
func (b *Backend) Calls(op Op) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[op]
}

// Injected returns how many faults of kind were injected.
func (b *Backend) Injected(kind Kind) uint64 { return b.injected[kind].Load() }

// TotalInjected returns how many faults were injected.
func (b *Backend) TotalInjected() uint64 {
	var n uint64
	for i := range b.injected {
		n += b.injected[i].Load()
	}
	return n
}

// fault counts the call and decides its fault; ok is false for a call left alone. r is drawn for where a
// partial fault strikes.
func (b *Backend) fault(op Op) (k Kind, r uint64, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls[op]++
	k, ok = b.scheduled[op][b.calls[op]]
	if ok {
		delete(b.scheduled[op], b.calls[op])
	} else if b.rate > 0 && b.opHit(op) && b.rng.Float64() < b.rate {
		var eligible []Kind
		for _, k := range b.opts.Kinds {
			if k.appliesTo(op) {
				eligible = append(eligible, k)
			}
		}
		if len(eligible) > 0 {
			k, ok = eligible[b.rng.IntN(len(eligible))], true
		}
	}
	if ok {
		b.injected[k].Add(1)
		r = b.rng.Uint64()
	}
	return k, r, ok
}

func (b *Backend) opHit(op Op) bool {
	for _, o := range b.opts.Ops {
		if o == op {
			return true
		}
	}
	return false
}

// timeoutError is a net.Error that reports a timeout, like a dial or read deadline passing.
type timeoutError struct{ what string }

func (e timeoutError) Error() string   { return e.what + ": i/o timeout" }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }
func (e timeoutError) Unwrap() error   { return ErrInjected }

var _ net.Error = timeoutError{}

func resetError() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: fmt.Errorf("%w: %w", ErrInjected, os.NewSyscallError("read", syscall.ECONNRESET))}
}

// errorFor is the error a simple fault of kind fails a call with.
func errorFor(op Op, name string, kind Kind) error {
	var err error
	switch kind {
	case Transient:
		err = storage.Transient(fmt.Errorf("503 SlowDown: please reduce your request rate (%w)", ErrInjected))
	case Timeout:
		err = timeoutError{what: string(op)}
	case Permission:
		err = fmt.Errorf("%w (%w)", storage.ErrPermission, ErrInjected)
	case NotFound:
		err = fmt.Errorf("%w (%w)", storage.ErrNotFound, ErrInjected)
	default:
		err = resetError()
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// stall waits until ctx ends or the stall bound passes.
func (b *Backend) stall(ctx context.Context) error {
	t := time.NewTimer(b.opts.StallFor)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Put injects a fault, or stores.
func (b *Backend) Put(ctx context.Context, name string, body io.ReaderAt, size int64) error {
	k, _, ok := b.fault(OpPut)
	if !ok {
		return b.Backend.Put(ctx, name, body, size)
	}
	switch k {
	case Stall:
		if err := b.stall(ctx); err != nil {
			return fmt.Errorf("put %s: %w", name, err)
		}
		return b.Backend.Put(ctx, name, body, size)
	case LostResponse:
		if err := b.Backend.Put(ctx, name, body, size); err != nil {
			return err
		}
	case Reset:
		// Read part of the body, as an upload cut off part way does, so retries must start it over.
		buf := make([]byte, size/2)
		_, _ = body.ReadAt(buf, 0)
	}
	return errorFor(OpPut, name, k)
}

// Delete injects a fault, or deletes.
func (b *Backend) Delete(ctx context.Context, name string) error {
	k, _, ok := b.fault(OpDelete)
	if !ok {
		return b.Backend.Delete(ctx, name)
	}
	switch k {
	case Stall:
		if err := b.stall(ctx); err != nil {
			return fmt.Errorf("delete %s: %w", name, err)
		}
		return b.Backend.Delete(ctx, name)
	case LostResponse:
		if err := b.Backend.Delete(ctx, name); err != nil {
			return err
		}
	}
	return errorFor(OpDelete, name, k)
}

// Stat injects a fault, or stats.
func (b *Backend) Stat(ctx context.Context, name string) (storage.Info, error) {
	k, _, ok := b.fault(OpStat)
	if !ok {
		return b.Backend.Stat(ctx, name)
	}
	if k == Stall {
		if err := b.stall(ctx); err != nil {
			return storage.Info{}, fmt.Errorf("stat %s: %w", name, err)
		}
		return b.Backend.Stat(ctx, name)
	}
	return storage.Info{}, errorFor(OpStat, name, k)
}

// errStopList ends the inner listing where a Reset strikes.
var errStopList = errors.New("stop listing")

// List injects a fault, or lists; a Reset delivers part of the listing before failing.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	k, r, ok := b.fault(OpList)
	if !ok {
		return b.Backend.List(ctx, prefix, fn)
	}
	switch k {
	case Stall:
		if err := b.stall(ctx); err != nil {
			return fmt.Errorf("list %s: %w", prefix, err)
		}
		return b.Backend.List(ctx, prefix, fn)
	case Reset:
		left := int(r % 8)
		err := b.Backend.List(ctx, prefix, func(fi storage.Info) error {
			if left == 0 {
				return errStopList
			}
			left--
			return fn(fi)
		})
		if err != nil && !errors.Is(err, errStopList) {
			return err
		}
	}
	return errorFor(OpList, prefix, k)
}

// Get injects a fault, or opens the object; body faults strike at a random offset of the range.
func (b *Backend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	k, r, ok := b.fault(OpGet)
	if !ok {
		return b.Backend.Get(ctx, name, offset, length)
	}
	switch k {
	case Stall:
		if err := b.stall(ctx); err != nil {
			return nil, fmt.Errorf("get %s: %w", name, err)
		}
		return b.Backend.Get(ctx, name, offset, length)
	case BodyReset, BodyTruncate, BodyStall:
	default:
		return nil, errorFor(OpGet, name, k)
	}
	n := length
	if n < 0 {
		fi, err := b.Backend.Stat(ctx, name)
		if err != nil {
			return nil, err
		}
		n = fi.Size - offset
	}
	if n <= 0 {
		// Nothing to cut: fail the request instead.
		b.injected[k].Add(^uint64(0))
		b.injected[Reset].Add(1)
		return nil, errorFor(OpGet, name, Reset)
	}
	rc, err := b.Backend.Get(ctx, name, offset, length)
	if err != nil {
		return nil, err
	}
	return &body{rc: rc, kind: k, cut: int64(r % uint64(n)), ctx: ctx, stallFor: b.opts.StallFor, closed: make(chan struct{})}, nil
}

// body delivers cut bytes of rc and then fails as kind says.
type body struct {
	rc       io.ReadCloser
	kind     Kind
	cut, n   int64
	fired    bool
	err      error
	ctx      context.Context
	stallFor time.Duration
	closed   chan struct{}
	once     sync.Once
}

func (b *body) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if !b.fired && b.n >= b.cut {
		b.fired = true
		switch b.kind {
		case BodyReset:
			b.err = resetError()
			return 0, b.err
		case BodyTruncate:
			b.err = fmt.Errorf("%w (%w)", io.ErrUnexpectedEOF, ErrInjected)
			return 0, b.err
		case BodyStall:
			t := time.NewTimer(b.stallFor)
			defer t.Stop()
			select {
			case <-b.closed:
				b.err = errors.New("read on closed body")
				return 0, b.err
			case <-b.ctx.Done():
				b.err = b.ctx.Err()
				return 0, b.err
			case <-t.C:
			}
		}
	}
	if !b.fired && int64(len(p)) > b.cut-b.n {
		p = p[:b.cut-b.n]
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	return n, err
}

// Close ends a stall in progress, as closing a response body unblocks its reader.
func (b *body) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.rc.Close()
}
