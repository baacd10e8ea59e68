package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// watchdog cancels a request that made no progress for the backend's timeout. A deadline for the whole
// request would not do: how long a transfer may take depends on its size and the link, while a stalled one
// should fail in bounded time either way.
type watchdog struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	timeout time.Duration
	mu      sync.Mutex
	timer   *time.Timer
}

// watch returns a context that the watchdog cancels after the timeout without a kick. A reader of a Get that
// stops reading for that long loses its download too, which is what a stalled one looks like from here.
func (b *Backend) watch(ctx context.Context) (context.Context, *watchdog) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{ctx: wctx, cancel: cancel, timeout: b.timeout}
	stalled := fmt.Errorf("no progress for %s: %w", b.timeout, os.ErrDeadlineExceeded)
	w.timer = time.AfterFunc(b.timeout, func() { cancel(stalled) })
	return wctx, w
}

// kick records progress. Multipart uploads read parts concurrently, hence the lock.
func (w *watchdog) kick() {
	w.mu.Lock()
	w.timer.Reset(w.timeout)
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	w.mu.Lock()
	w.timer.Stop()
	w.mu.Unlock()
	w.cancel(nil)
}

// cause replaces the error of a request the watchdog cancelled by the reason, unless the caller's own context
// ended, whose error then stands.
func (w *watchdog) cause(parent context.Context, err error) error {
	if parent.Err() != nil {
		return err
	}
	if c := context.Cause(w.ctx); errors.Is(c, os.ErrDeadlineExceeded) {
		return c
	}
	return err
}

// progressReader is the body of a Put: every read counts as progress. It keeps the io.ReaderAt and io.Seeker
// of the SectionReader it embeds, which minio-go needs to stream without buffering.
type progressReader struct {
	*io.SectionReader
	w *watchdog
}

func (r *progressReader) Read(p []byte) (int, error) {
	r.w.kick()
	return r.SectionReader.Read(p)
}

func (r *progressReader) ReadAt(p []byte, off int64) (int, error) {
	r.w.kick()
	return r.SectionReader.ReadAt(p, off)
}

// bodyReader is the body of a Get: reads count as progress, and errors name the object.
type bodyReader struct {
	body io.ReadCloser
	w    *watchdog
	ctx  context.Context
	b    *Backend
	name string
}

func (r *bodyReader) Read(p []byte) (int, error) {
	r.w.kick()
	n, err := r.body.Read(p)
	if err != nil && err != io.EOF {
		err = r.b.wrap("read", r.name, r.w.cause(r.ctx, err))
	}
	return n, err
}

func (r *bodyReader) Close() error {
	r.w.stop()
	return r.body.Close()
}
