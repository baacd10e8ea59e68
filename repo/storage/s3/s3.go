// Package s3 stores repository objects in an S3 bucket (Amazon S3, MinIO or another S3-compatible server)
// under a key prefix, through minio-go.
package s3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/straddle-io/straddle/repo/storage"
)

// DefaultTimeout is how long one request may go without progress when Options.Timeout is zero.
const DefaultTimeout = 2 * time.Minute

// DefaultPartSize is the part size of multipart uploads when Options.PartSize is zero. It is above the
// ~16 MiB pack size so a pack, which may overshoot by one blob, normally goes up in one PUT.
const DefaultPartSize = 32 << 20

// minPartSize is S3's smallest part (except the last).
const minPartSize = 5 << 20

// Options say where the bucket is and how to reach it.
type Options struct {
	// Endpoint is the server's host[:port], without a scheme.
	Endpoint string
	// Bucket holds the repository.
	Bucket string
	// Prefix is the key prefix the repository lives under, without leading or trailing slashes; empty means
	// the bucket's root.
	Prefix string
	// Region signs requests and places a bucket that Create makes. Empty means $AWS_REGION, else
	// $AWS_DEFAULT_REGION, else us-east-1.
	Region string
	// PlainHTTP talks http instead of https.
	PlainHTTP bool
	// AccessKeyID, SecretAccessKey and SessionToken are the credentials. When AccessKeyID is empty they come
	// from $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY and $AWS_SESSION_TOKEN, else from the shared
	// credentials file ($AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials, profile $AWS_PROFILE or default).
	AccessKeyID, SecretAccessKey, SessionToken string
	// CACertFile is a PEM bundle of extra certificate authorities to trust for https.
	CACertFile string
	// CABundle is a PEM bundle given inline (from a BackupStorageLocation), trusted besides CACertFile's.
	CABundle []byte
	// InsecureSkipVerify accepts any server certificate. Only for tests and trusted networks.
	InsecureSkipVerify bool
	// BucketLookup is "auto" (or empty), "path" (http://host/bucket/key) or "dns" (http://bucket.host/key).
	BucketLookup string
	// Timeout is how long one request may go without progress: a metadata request must finish within it,
	// and a transfer must keep moving bytes. Zero means DefaultTimeout.
	Timeout time.Duration
	// PartSize is the part size of multipart uploads and so the largest object sent in one PUT. Zero means
	// DefaultPartSize; it must be at least 5 MiB.
	PartSize int64
}

// Backend is a bucket and key prefix. Requests are made once: minio-go's own retries are disabled so that the
// retrying wrapper (repo/storage/retry) alone decides what is retried.
type Backend struct {
	client    *minio.Client
	core      minio.Core
	endpoint  string
	bucket    string
	prefix    string // "" or "some/prefix/"
	location  string
	region    string
	timeout   time.Duration
	partSize  int64
	anonymous bool   // no credentials were found, so requests go unsigned
	credsFrom string // where the credentials came from, for the message of a refusal
}

var _ storage.Backend = (*Backend)(nil)

// New returns a backend for the bucket without contacting the server.
func New(opts Options) (*Backend, error) {
	if opts.Endpoint == "" || strings.Contains(opts.Endpoint, "/") {
		return nil, fmt.Errorf("s3 endpoint %q: want host[:port]", opts.Endpoint)
	}
	if err := s3utils.CheckValidBucketNameStrict(opts.Bucket); err != nil {
		return nil, fmt.Errorf("s3 bucket %q: %w", opts.Bucket, err)
	}
	prefix := strings.Trim(opts.Prefix, "/")
	if prefix != "" {
		if err := storage.ValidName(prefix); err != nil {
			return nil, fmt.Errorf("s3 prefix %q: want slash-separated names without empty, . or .. parts", opts.Prefix)
		}
		prefix += "/"
	}
	lookup, err := bucketLookup(opts.BucketLookup)
	if err != nil {
		return nil, err
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	partSize := opts.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < minPartSize {
		return nil, fmt.Errorf("s3 part size %d is below the 5 MiB S3 allows", partSize)
	}
	region := resolveRegion(opts.Region)
	transport, err := newTransport(opts, timeout)
	if err != nil {
		return nil, err
	}
	creds, anonymous, credsFrom := newCredentials(opts)
	client, err := minio.New(opts.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       !opts.PlainHTTP,
		Transport:    transport,
		Region:       region,
		BucketLookup: lookup,
		MaxRetries:   1, // one attempt: retrying is the retry wrapper's decision
	})
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %s: %w", opts.Endpoint, err)
	}
	loc := "s3://"
	if opts.PlainHTTP {
		loc = "s3+http://"
	}
	loc += opts.Endpoint + "/" + opts.Bucket
	if prefix != "" {
		loc += "/" + strings.TrimSuffix(prefix, "/")
	}
	return &Backend{
		client:    client,
		core:      minio.Core{Client: client},
		endpoint:  opts.Endpoint,
		bucket:    opts.Bucket,
		prefix:    prefix,
		location:  loc,
		region:    region,
		timeout:   timeout,
		partSize:  partSize,
		anonymous: anonymous,
		credsFrom: credsFrom,
	}, nil
}

// Open returns a backend for an existing bucket, checking that it exists and that the credentials are valid.
func Open(ctx context.Context, opts Options) (*Backend, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	ok, err := b.bucketExists(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("bucket %q at %s: %w", b.bucket, opts.Endpoint, storage.ErrNoBucket)
	}
	return b, nil
}

// Create returns a backend for the bucket, making the bucket in the options' region when it does not exist.
func Create(ctx context.Context, opts Options) (*Backend, error) {
	b, err := New(opts)
	if err != nil {
		return nil, err
	}
	ok, err := b.bucketExists(ctx)
	if err != nil || ok {
		return b, err
	}
	mctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	err = b.client.MakeBucket(mctx, b.bucket, minio.MakeBucketOptions{Region: b.region})
	if code := minio.ToErrorResponse(err).Code; code == "BucketAlreadyOwnedByYou" {
		err = nil // made by someone else with our credentials in the meantime
	}
	if err != nil {
		return nil, fmt.Errorf("the bucket does not exist; %w", b.wrap("create", "", err))
	}
	return b, nil
}

// bucketExists asks with HEAD on the bucket. That needs s3:ListBucket, which a policy may grant only for some
// prefixes or not at all while allowing the object requests a repository makes; a plain AccessDenied is
// therefore taken as "exists", and the object requests report what is really refused. Wrong keys come back
// with their own codes (or, from Amazon, refuse the object requests too); no keys at all fail here.
func (b *Backend) bucketExists(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	ok, err := b.client.BucketExists(ctx, b.bucket)
	if minio.ToErrorResponse(err).Code == minio.AccessDenied && !b.anonymous {
		return true, nil
	}
	if err != nil {
		return false, b.wrap("look up", "", err)
	}
	return ok, nil
}

// Location is s3://host/bucket/prefix (s3+http://… for plain http), without credentials.
func (b *Backend) Location() string { return b.location }

func (b *Backend) key(name string) (string, error) {
	if err := storage.ValidName(name); err != nil {
		return "", err
	}
	return b.prefix + name, nil
}

// Put uploads the object in one PUT, or in parts of PartSize read straight from body when it is larger; a
// failed multipart upload is aborted, so either the whole object is stored or none of it.
func (b *Backend) Put(ctx context.Context, name string, body io.ReaderAt, size int64) error {
	key, err := b.key(name)
	if err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("put %s: negative size %d", name, size)
	}
	wctx, w := b.watch(ctx)
	defer w.stop()
	// A SectionReader is an io.ReadSeeker and io.ReaderAt: minio-go then sends a single PUT straight from it
	// and reads multipart parts by offset, buffering neither.
	r := &progressReader{SectionReader: io.NewSectionReader(body, 0, size), w: w}
	_, err = b.client.PutObject(wctx, b.bucket, key, r, size, minio.PutObjectOptions{
		PartSize:    uint64(b.partSize),
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return b.wrap("put", name, w.cause(ctx, err))
	}
	return nil
}

// Get fetches a range of the object. The request is made before Get returns, so a missing object or a range
// past its end fails here rather than on the first read.
func (b *Backend) Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error) {
	key, err := b.key(name)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("get %s: negative offset %d", name, offset)
	}
	if length == 0 {
		// HTTP cannot ask for zero bytes; the object must still exist and be long enough.
		fi, err := b.Stat(ctx, name)
		if err != nil {
			return nil, err
		}
		if offset > fi.Size {
			return nil, fmt.Errorf("get %s at %d: %w", name, offset, storage.ErrTruncated)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err = opts.SetRange(offset, offset+length-1)
	case offset > 0:
		err = opts.SetRange(offset, 0) // from offset to the end
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	wctx, w := b.watch(ctx)
	body, _, _, err := b.core.GetObject(wctx, b.bucket, key, opts)
	if err != nil {
		w.stop()
		return nil, b.wrap("get", name, w.cause(ctx, err))
	}
	return &bodyReader{body: body, w: w, ctx: ctx, b: b, name: name}, nil
}

// Stat returns the object's size.
func (b *Backend) Stat(ctx context.Context, name string) (storage.Info, error) {
	key, err := b.key(name)
	if err != nil {
		return storage.Info{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	oi, err := b.client.StatObject(ctx, b.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return storage.Info{}, b.wrap("stat", name, err)
	}
	return storage.Info{Name: name, Size: oi.Size}, nil
}

// List lists the keys under the backend's prefix followed by prefix, and strips the backend's prefix off.
func (b *Backend) List(ctx context.Context, prefix string, fn func(storage.Info) error) error {
	wctx, w := b.watch(ctx)
	defer w.stop()
	lctx, cancel := context.WithCancel(wctx)
	// Cancelling stops minio-go's listing goroutine when fn stops early.
	defer cancel()
	for oi := range b.client.ListObjects(lctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true}) {
		if oi.Err != nil {
			return b.wrap("list", prefix+"*", w.cause(ctx, oi.Err))
		}
		w.kick()
		name := strings.TrimPrefix(oi.Key, b.prefix)
		if strings.HasSuffix(name, "/") {
			continue // a "folder" marker made by a console, not an object of ours
		}
		if err := fn(storage.Info{Name: name, Size: oi.Size}); err != nil {
			return err
		}
	}
	// The listing channel closes without an error when the context ends.
	if err := wctx.Err(); err != nil {
		return b.wrap("list", prefix+"*", w.cause(ctx, err))
	}
	return nil
}

// Delete removes the object; S3 reports success for an absent key.
func (b *Backend) Delete(ctx context.Context, name string) error {
	key, err := b.key(name)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	if err := b.client.RemoveObject(ctx, b.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		if sentinel(err, true) == storage.ErrNotFound {
			return nil
		}
		return b.wrap("delete", name, err)
	}
	return nil
}

func bucketLookup(s string) (minio.BucketLookupType, error) {
	switch s {
	case "", "auto":
		return minio.BucketLookupAuto, nil
	case "path":
		return minio.BucketLookupPath, nil
	case "dns":
		return minio.BucketLookupDNS, nil
	}
	return 0, fmt.Errorf("bucket lookup %q: want auto, path or dns", s)
}

func resolveRegion(region string) string {
	for _, r := range []string{region, os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION")} {
		if r != "" {
			return r
		}
	}
	return "us-east-1"
}

// newCredentials returns the given keys, or the chain of environment and shared file. anonymous reports that
// the chain found nothing and from where it found them, so that a refusal can tell the user what to fix.
func newCredentials(opts Options) (creds *credentials.Credentials, anonymous bool, from string) {
	if opts.AccessKeyID != "" {
		return credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken), false, "the configured access key"
	}
	env := &credentials.EnvAWS{}
	creds = credentials.NewChainCredentials([]credentials.Provider{env, &credentials.FileAWSCredentials{}})
	v, err := creds.GetWithContext(nil)
	if err != nil || v.SignerType.IsAnonymous() {
		return creds, true, ""
	}
	from = "the shared credentials file"
	if ev, _ := env.Retrieve(); ev.AccessKeyID != "" {
		from = "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	}
	return creds, false, from
}

func newTransport(opts Options, timeout time.Duration) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(!opts.PlainHTTP)
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	tr.ResponseHeaderTimeout = timeout
	if opts.PlainHTTP {
		return tr, nil
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if opts.CACertFile != "" || len(opts.CABundle) > 0 {
		// Added to the system's authorities, so a bundle for a private server does not break public ones.
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if opts.CACertFile != "" {
			pem, err := os.ReadFile(opts.CACertFile)
			if err != nil {
				return nil, fmt.Errorf("read CA bundle: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", opts.CACertFile)
			}
		}
		if len(opts.CABundle) > 0 && !pool.AppendCertsFromPEM(opts.CABundle) {
			return nil, errors.New("the CA bundle holds no PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	tr.TLSClientConfig.InsecureSkipVerify = opts.InsecureSkipVerify
	return tr, nil
}
