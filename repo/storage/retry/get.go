package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/straddle-io/straddle/repo/storage"
)

// Get opens the object with retries. The reader it returns survives a body that breaks or stalls part way: it
// issues a new ranged Get from the first byte not yet delivered, so a 16 MiB pack cut at 15 MiB costs 1 MiB
// more, not 16. Opening and resuming share one budget.
func (b *Backend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	r := &reader{b: b, ctx: ctx, name: name, offset: offset, length: length}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// reader delivers an object range across as many requests as it takes. Like any body, it is read from one
// goroutine at a time.
type reader struct {
	b              *Backend
	ctx            context.Context
	name           string
	offset, length int64
	pos            int64 // bytes delivered to the caller
	bu             budget
	cur            *attempt
	err            error // sticky once the reader has failed or closed
}

// attempt is one response body and what it takes to abort it.
type attempt struct {
	body    io.ReadCloser
	cancel  context.CancelFunc
	once    sync.Once
	stalled atomic.Bool
	watch   *time.Timer
}

// abort closes the body and cancels its request; a stall watchdog and the reader may both call it.
func (a *attempt) abort() {
	a.once.Do(func() {
		a.cancel()
		_ = a.body.Close()
	})
}

// open makes requests until one returns a body for the rest of the range, or the budget runs out.
func (r *reader) open() error {
	for {
		a, err := r.request()
		if err == nil {
			r.cur = a
			return nil
		}
		// A range that starts past the end (HTTP 416) is the object's size, not a fault; only a body cut in
		// transit is resumed.
		if !retryable(r.ctx, err) || errors.Is(err, storage.ErrTruncated) {
			return err
		}
		if err := r.b.wait(r.ctx, &r.bu, "get", r.name, r.offset+r.pos, err); err != nil {
			return err
		}
	}
}

// request issues one ranged Get for what is left; its context lives as long as the body, and is cancelled if
// the response does not start within the request timeout.
func (r *reader) request() (*attempt, error) {
	ctx, cancel := context.WithCancel(r.ctx)
	var timedOut atomic.Bool
	var timer *time.Timer
	if t := r.b.opts.RequestTimeout; t > 0 {
		timer = time.AfterFunc(t, func() {
			timedOut.Store(true)
			cancel()
		})
	}
	length := r.length
	if length >= 0 {
		length -= r.pos
	}
	body, err := r.b.Backend.Get(ctx, r.name, r.offset+r.pos, length)
	if timer != nil && !timer.Stop() && err == nil {
		// The timeout fired as the response arrived: the body's context is already cancelled.
		_ = body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		if timedOut.Load() && r.ctx.Err() == nil {
			err = fmt.Errorf("get %s: no response within %s: %w", r.name, r.b.opts.RequestTimeout, context.DeadlineExceeded)
		}
		return nil, err
	}
	a := &attempt{body: body, cancel: cancel}
	if t := r.b.opts.StallTimeout; t > 0 {
		a.watch = time.AfterFunc(t, func() {
			a.stalled.Store(true)
			a.abort()
		})
		a.watch.Stop()
	}
	return a, nil
}

// Read reads from the current body, resuming with a new request when it fails in a way worth retrying.
func (r *reader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.length >= 0 && r.pos >= r.length {
			return 0, io.EOF
		}
		if r.cur == nil {
			if err := r.open(); err != nil {
				r.err = err
				return 0, err
			}
		}
		a := r.cur
		if a.watch != nil {
			a.watch.Reset(r.b.opts.StallTimeout)
		}
		n, err := a.body.Read(p)
		if a.watch != nil {
			a.watch.Stop()
		}
		r.pos += int64(n)
		stalled := a.stalled.Load()
		if !stalled && (err == nil || err == io.EOF) {
			// A clean EOF is the end of the object, even short of the range asked for: it is not a fault the
			// same request would fix, and ReadRange reports it as ErrTruncated.
			return n, err
		}
		a.abort()
		r.cur = nil
		if stalled {
			err = fmt.Errorf("get %s at offset %d: no data for %s: %w", r.name, r.offset+r.pos, r.b.opts.StallTimeout, ErrStalled)
		}
		if !stalled && !retryable(r.ctx, err) {
			r.err = err
			return n, err
		}
		if r.length >= 0 && r.pos >= r.length {
			// The last byte arrived together with the error: nothing is left to resume.
			return n, nil
		}
		if werr := r.b.wait(r.ctx, &r.bu, "get", r.name, r.offset+r.pos, err); werr != nil {
			r.err = werr
			return n, werr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Close releases the current body; later reads fail.
func (r *reader) Close() error {
	if r.cur != nil {
		r.cur.abort()
		r.cur = nil
	}
	if r.err == nil {
		r.err = fmt.Errorf("get %s: read on closed body", r.name)
	}
	return nil
}
