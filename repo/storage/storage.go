// Package storage is the object-store interface the repository is written against, and the errors and
// helpers shared by its implementations (local filesystem, memory, S3).
package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNotFound means the named object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrTruncated means an object ended before the range a reader asked for.
var ErrTruncated = errors.New("object is shorter than expected")

// ErrPermission means the storage refused the request: the credentials are wrong, expired or not allowed to
// do this. Retrying does not help.
var ErrPermission = errors.New("access denied: check the storage credentials (access key and secret key) and their permissions")

// ErrNoBucket means the bucket a location names does not exist.
var ErrNoBucket = errors.New("bucket does not exist")

// ErrInvalidName means an object name was rejected by ValidName.
var ErrInvalidName = errors.New("invalid object name")

// ErrTransient marks a failure that may succeed if the same request is made again.
var ErrTransient = errors.New("transient storage error")

// Error contract for backends, which the retry wrapper (repo/storage/retry) relies on. Retries are decided by
// errors.Is on these sentinels plus a few generic transport errors, never by matching messages, so a backend
// must wrap (with %w) what it returns:
//
//   - Missing object: ErrNotFound. Missing bucket: ErrNoBucket. Access denied, unknown key, bad signature or
//     expired credentials (HTTP 401/403): ErrPermission. Invalid names: ErrInvalidName. Never retried.
//   - A failure worth repeating: wrap with Transient (ErrTransient). For HTTP backends that is every 5xx
//     (500 InternalError, 502, 503 SlowDown/ServiceUnavailable, 504), 429 Too Many Requests, 408 and
//     RequestTimeout; anything else (other 4xx, unknown errors) is not retried.
//   - Transport errors may be returned as they come from net/http: a net.Error whose Timeout() is true,
//     syscall.ECONNRESET, ECONNREFUSED, EPIPE, io.ErrUnexpectedEOF, and io.EOF inside a *url.Error (the server
//     closed the connection before answering) are retried without wrapping.
//   - A Get body that ends early must fail with io.ErrUnexpectedEOF or ErrTruncated (net/http already reports
//     a body shorter than its Content-Length as io.ErrUnexpectedEOF) and is resumed; a clean io.EOF means the
//     object ends there and is not retried. ErrTruncated from Get itself (the range starts past the end,
//     HTTP 416) is final.
//   - context.Canceled and context.DeadlineExceeded from the caller's context are passed through unchanged
//     and stop any retry.
//   - Backends should not retry on their own (e.g. minio-go's MaxRetry = 1), so one wrapper owns the budget
//     and counts the retries.

// Transient wraps err with ErrTransient; errors.Is still finds err and anything it wraps.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrTransient, err)
}

// Info describes one stored object.
type Info struct {
	Name string
	Size int64
}

// Backend stores named objects. It is shaped for object storage: whole-object writes (no append, no rename),
// ranged reads, and listings that may lag behind writes. Names are slash-separated keys such as
// "data/ab/ab12…". Implementations are safe for concurrent use.
type Backend interface {
	// Put stores size bytes read from body under name, all or nothing. body is read from offset 0 and may be
	// read again from the start if the implementation retries.
	Put(ctx context.Context, name string, body io.ReaderAt, size int64) error
	// Get returns length bytes of name from offset; length < 0 reads to the end.
	Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
	// Stat returns the object's size, or ErrNotFound.
	Stat(ctx context.Context, name string) (Info, error)
	// List calls fn for every object whose name starts with prefix, in no particular order.
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// Delete removes name; deleting an absent object is not an error.
	Delete(ctx context.Context, name string) error
	// Location names the backend for messages, without credentials.
	Location() string
}

// ReadAll reads a whole object.
func ReadAll(ctx context.Context, be Backend, name string) ([]byte, error) {
	return ReadRange(ctx, be, name, 0, -1)
}

// ReadRange reads length bytes at offset and fails if fewer arrive, so a truncated object is never mistaken
// for a short one.
func ReadRange(ctx context.Context, be Backend, name string, offset, length int64) ([]byte, error) {
	rc, err := be.Get(ctx, name, offset, length)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf []byte
	if length >= 0 {
		buf = make([]byte, length)
		if _, err := io.ReadFull(rc, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = ErrTruncated
			}
			return nil, fmt.Errorf("read %s [%d, +%d): %w", name, offset, length, err)
		}
		return buf, nil
	}
	buf, err = io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return buf, nil
}

// PutBytes stores data under name.
func PutBytes(ctx context.Context, be Backend, name string, data []byte) error {
	return be.Put(ctx, name, bytes.NewReader(data), int64(len(data)))
}

// ValidName rejects names that could escape a directory-backed store or that no writer produces.
func ValidName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.HasSuffix(name, "/") || strings.ContainsRune(name, 0) {
		return fmt.Errorf("%w %q", ErrInvalidName, name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%w %q", ErrInvalidName, name)
		}
	}
	return nil
}

// Unwrapper is implemented by backends that add behaviour to another backend (retrying, fault injection), so
// callers can find a capability of a backend further down.
type Unwrapper interface {
	Unwrap() Backend
}

// RetryCounter is implemented by backends that count the requests they repeated (the retry wrapper).
type RetryCounter interface {
	Retries() uint64
}

// Retries returns the count of the first backend in be's wrapping chain that counts retries; ok is false when
// none does.
func Retries(be Backend) (n uint64, ok bool) {
	for be != nil {
		if rc, ok := be.(RetryCounter); ok {
			return rc.Retries(), true
		}
		u, ok := be.(Unwrapper)
		if !ok {
			return 0, false
		}
		be = u.Unwrap()
	}
	return 0, false
}
