// Package location turns a repository location as users write it (a path, file:///path, s3://…) into a
// storage backend.
package location

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/fs"
)

// Location is a parsed repository location.
type Location struct {
	// Scheme is "file", "s3" or "s3+http".
	Scheme string
	// Path is the directory of a file location.
	Path string
	// Host, Bucket and Prefix locate an S3 repository.
	Host, Bucket, Prefix string
}

// Parse understands a bare path, file:///path, s3://host[:port]/bucket[/prefix] and s3+http://….
func Parse(s string) (Location, error) {
	if s == "" {
		return Location{}, errors.New("no repository given: pass --repo or set STRADDLE_REPOSITORY")
	}
	if !strings.Contains(s, "://") {
		abs, err := filepath.Abs(s)
		if err != nil {
			return Location{}, fmt.Errorf("repository path %q: %w", s, err)
		}
		return Location{Scheme: "file", Path: abs}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Location{}, fmt.Errorf("repository location %q is not a valid URL: %w", s, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("repository location %q: file URLs take no host; write file:///absolute/path", s)
		}
		if u.Path == "" {
			return Location{}, fmt.Errorf("repository location %q has no path", s)
		}
		return Location{Scheme: "file", Path: filepath.Clean(u.Path)}, nil
	case "s3", "s3+http":
		parts := strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)
		if u.Host == "" || parts[0] == "" {
			return Location{}, fmt.Errorf("repository location %q: want %s://host[:port]/bucket[/prefix]", s, u.Scheme)
		}
		loc := Location{Scheme: u.Scheme, Host: u.Host, Bucket: parts[0]}
		if len(parts) == 2 {
			loc.Prefix = strings.Trim(parts[1], "/")
		}
		return loc, nil
	}
	return Location{}, fmt.Errorf("repository location %q: unknown scheme %q (want a path, file://, s3:// or s3+http://)", s, u.Scheme)
}

// String is the location without credentials.
func (l Location) String() string {
	if l.Scheme == "file" {
		return l.Path
	}
	s := l.Scheme + "://" + l.Host + "/" + l.Bucket
	if l.Prefix != "" {
		s += "/" + l.Prefix
	}
	return s
}

// Open returns a backend for the location; create makes a missing directory (for init).
func Open(l Location, create bool) (storage.Backend, error) {
	switch l.Scheme {
	case "file":
		if create {
			return fs.Create(l.Path)
		}
		be, err := fs.Open(l.Path)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("there is no repository at %s: the directory does not exist", l.Path)
		}
		return be, err
	case "s3", "s3+http":
		return nil, fmt.Errorf("repository %s: S3 storage is not supported by this build yet; use a directory", l)
	}
	return nil, fmt.Errorf("unknown repository scheme %q", l.Scheme)
}
