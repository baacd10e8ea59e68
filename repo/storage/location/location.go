// Package location turns a repository location as users write it (a path, file:///path, s3://…) into a
// storage backend.
package location

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/fs"
	"github.com/straddle-io/straddle/repo/storage/s3"
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
	if err != nil && strings.Contains(s, "@") {
		// Neither the URL nor the parser's error (which quotes it) is repeated: it may hold a secret.
		return Location{}, errors.New("the repository location is not a valid URL, and must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
	}
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
		if u.User != nil {
			// The URL is not repeated here: it holds a secret.
			return Location{}, errors.New("the repository location must not carry credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
		}
		parts := strings.SplitN(strings.Trim(u.Path, "/"), "/", 2)
		if u.Host == "" || parts[0] == "" || u.RawQuery != "" || u.Fragment != "" {
			return Location{}, fmt.Errorf("repository location %q: want %s://host[:port]/bucket[/prefix]", s, u.Scheme)
		}
		loc := Location{Scheme: u.Scheme, Host: u.Host, Bucket: parts[0]}
		if len(parts) == 2 {
			loc.Prefix = strings.Trim(parts[1], "/")
			if err := storage.ValidName(loc.Prefix); err != nil {
				return Location{}, fmt.Errorf("repository location %q: the prefix must be names separated by single slashes, without \".\" or \"..\" parts", s)
			}
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

// Options tune how Open reaches a location; the zero value suits a directory and a public S3 endpoint.
type Options struct {
	// Create makes a missing directory or bucket, for init.
	Create bool
	// Region of the bucket; empty means $AWS_REGION, else $AWS_DEFAULT_REGION, else us-east-1.
	Region string
	// CACertFile is a PEM bundle of extra authorities to trust for s3:// (https).
	CACertFile string
	// InsecureTLS accepts any certificate from an s3:// server.
	InsecureTLS bool
	// BucketLookup is "auto" (or empty), "path" or "dns": how the bucket is named in requests.
	BucketLookup string
}

// S3Options returns the s3 backend options for an S3 location, with credentials left to the environment.
func (l Location) S3Options(o Options) s3.Options {
	return s3.Options{
		Endpoint:           l.Host,
		Bucket:             l.Bucket,
		Prefix:             l.Prefix,
		Region:             o.Region,
		PlainHTTP:          l.Scheme == "s3+http",
		CACertFile:         o.CACertFile,
		InsecureSkipVerify: o.InsecureTLS,
		BucketLookup:       o.BucketLookup,
	}
}

// Open returns a backend for the location.
func Open(ctx context.Context, l Location, o Options) (storage.Backend, error) {
	switch l.Scheme {
	case "file":
		if o.Create {
			return fs.Create(l.Path)
		}
		be, err := fs.Open(l.Path)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("there is no repository at %s: the directory does not exist", l.Path)
		}
		return be, err
	case "s3", "s3+http":
		if o.Create {
			return s3.Create(ctx, l.S3Options(o))
		}
		be, err := s3.Open(ctx, l.S3Options(o))
		if errors.Is(err, storage.ErrNoBucket) {
			return nil, fmt.Errorf("there is no repository at %s: %w", l, err)
		}
		return be, err
	}
	return nil, fmt.Errorf("unknown repository scheme %q", l.Scheme)
}
