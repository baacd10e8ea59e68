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
		return fmt.Errorf("invalid object name %q", name)
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("invalid object name %q", name)
		}
	}
	return nil
}
