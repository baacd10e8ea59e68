// Package mem keeps repository objects in memory, for tests.
package mem

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/straddle-io/straddle/repo/storage"
)

// Backend is a map of objects guarded by a mutex.
type Backend struct {
	mu      sync.RWMutex
	objects map[string][]byte
}

var _ storage.Backend = (*Backend)(nil)

// New returns an empty store.
func New() *Backend { return &Backend{objects: map[string][]byte{}} }

// Location names the store.
func (b *Backend) Location() string { return "memory" }

// Put stores a copy of the body.
func (b *Backend) Put(ctx context.Context, name string, body io.ReaderAt, size int64) error {
	if err := storage.ValidName(name); err != nil {
		return err
	}
	buf := make([]byte, size)
	if _, err := body.ReadAt(buf, 0); err != nil && !(err == io.EOF && size == 0) {
		return fmt.Errorf("put %s: %w", name, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.objects[name] = buf
	return nil
}

// Get returns a section of the object.
func (b *Backend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	b.mu.RLock()
	data, ok := b.objects[name]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, storage.ErrNotFound)
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", name, offset)
	}
	// Past the end reads as empty, like a file; callers detect the short read.
	data = data[min(offset, int64(len(data))):]
	if length >= 0 && length < int64(len(data)) {
		data = data[:length]
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (storage.Info, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	data, ok := b.objects[name]
	if !ok {
		return storage.Info{}, fmt.Errorf("%s: %w", name, storage.ErrNotFound)
	}
	return storage.Info{Name: name, Size: int64(len(data))}, nil
}

// List calls fn for each object under prefix.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	b.mu.RLock()
	var infos []storage.Info
	for name, data := range b.objects {
		if strings.HasPrefix(name, prefix) {
			infos = append(infos, storage.Info{Name: name, Size: int64(len(data))})
		}
	}
	b.mu.RUnlock()
	for _, fi := range infos {
		if err := fn(fi); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object.
func (b *Backend) Delete(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.objects, name)
	return nil
}

// Mutate changes a stored object in place, so tests can simulate storage damage.
func (b *Backend) Mutate(name string, fn func([]byte) []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	data, ok := b.objects[name]
	if !ok {
		return fmt.Errorf("%s: %w", name, storage.ErrNotFound)
	}
	b.objects[name] = fn(bytes.Clone(data))
	return nil
}
