// Package fs stores repository objects as files in a local directory; it is the embedded default backend.
package fs

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/straddle-io/straddle/repo/storage"
)

const tempPrefix = ".tmp-"

// Backend is a directory of objects. Writes go to a temp file that is synced and then renamed into place, so
// a crash never leaves a half-written object under its final name.
type Backend struct {
	dir string
}

var _ storage.Backend = (*Backend)(nil)

// Open uses an existing directory.
func Open(dir string) (*Backend, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("repository directory %s does not exist: %w", dir, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("open repository directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("repository path %s is not a directory", dir)
	}
	return &Backend{dir: dir}, nil
}

// Create makes the directory (and parents) if needed and opens it.
func Create(dir string) (*Backend, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create repository directory: %w", err)
	}
	return Open(dir)
}

// Location returns the directory.
func (b *Backend) Location() string { return b.dir }

func (b *Backend) path(name string) (string, error) {
	if err := storage.ValidName(name); err != nil {
		return "", err
	}
	return filepath.Join(b.dir, filepath.FromSlash(name)), nil
}

// Put writes the object atomically.
func (b *Backend) Put(ctx context.Context, name string, body io.ReaderAt, size int64) error {
	p, err := b.path(name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("put %s: %w", name, err)
	}
	var r io.Reader = io.NewSectionReader(body, 0, size)
	if br, ok := body.(*bytes.Reader); ok && br.Size() == size {
		// Write the caller's buffer in one go instead of through a copy loop.
		if _, err := br.Seek(0, io.SeekStart); err == nil {
			r = br
		}
	}
	err = writeSync(f, r, size)
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("put %s: %w", name, err)
	}
	return syncDir(dir)
}

func writeSync(f *os.File, r io.Reader, size int64) error {
	n, err := io.Copy(f, r)
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d of %d bytes", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes the rename durable; some file systems refuse to sync directories, which is not worth failing on.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	_ = d.Sync()
	return d.Close()
}

// Get opens a section of the object.
func (b *Backend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	p, err := b.path(name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notFound(name, err)
	}
	if offset < 0 {
		f.Close()
		return nil, fmt.Errorf("get %s: negative offset %d", name, offset)
	}
	if length < 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return nil, fmt.Errorf("get %s: %w", name, err)
		}
		return f, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(f, offset, length), f}, nil
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (storage.Info, error) {
	p, err := b.path(name)
	if err != nil {
		return storage.Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return storage.Info{}, notFound(name, err)
	}
	return storage.Info{Name: name, Size: fi.Size()}, nil
}

// List walks the directory under prefix, skipping temp files of writes in progress.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	// The prefix may end inside a name ("data/a"), so walk from its directory part and filter.
	start := b.dir
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(b.dir, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(start, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		rel, err := filepath.Rel(b.dir, p)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !strings.HasPrefix(name, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // deleted while listing
			}
			return err
		}
		return fn(storage.Info{Name: name, Size: fi.Size()})
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	return nil
}

// Delete removes the object.
func (b *Backend) Delete(ctx context.Context, name string) error {
	p, err := b.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return nil
}

func notFound(name string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", name, storage.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", name, err)
}
