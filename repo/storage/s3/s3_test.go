package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/storage"
)

// fakeS3 answers every request with one canned S3 error and counts the requests.
func fakeS3(t *testing.T, status int, code string) (Options, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.Header().Set("X-Minio-Error-Code", code) // how MinIO names the error of a HEAD, which has no body
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>canned</Message><Key>k</Key><BucketName>bkt</BucketName><RequestId>1</RequestId></Error>`, code)
		}
	}))
	t.Cleanup(srv.Close)
	return Options{
		Endpoint:        strings.TrimPrefix(srv.URL, "http://"),
		Bucket:          "bkt",
		Prefix:          "pre",
		PlainHTTP:       true,
		AccessKeyID:     "AKID",
		SecretAccessKey: "very-secret-value",
		BucketLookup:    "path",
	}, &n
}

func TestErrorsMapToSentinels(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		status int
		code   string
		want   error
	}{
		{403, "InvalidAccessKeyId", storage.ErrPermission},
		{403, "SignatureDoesNotMatch", storage.ErrPermission},
		{403, "AccessDenied", storage.ErrPermission},
		{404, "NoSuchKey", storage.ErrNotFound},
		{404, "NoSuchBucket", storage.ErrNoBucket},
		{416, "InvalidRange", storage.ErrTruncated},
	} {
		t.Run(tc.code, func(t *testing.T) {
			opts, _ := fakeS3(t, tc.status, tc.code)
			be, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = be.Get(ctx, "data/ab/x", 5, 10)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Get: %v; want %v", err, tc.want)
			}
			if msg := err.Error(); !strings.Contains(msg, "pre/data/ab/x") || !strings.Contains(msg, `"bkt"`) || strings.Contains(msg, opts.SecretAccessKey) {
				t.Errorf("message %q should name key and bucket and hide the secret", msg)
			}
		})
	}
}

func TestOpenChecksTheBucket(t *testing.T) {
	ctx := context.Background()
	for code, want := range map[string]error{
		"NoSuchBucket":          storage.ErrNoBucket,
		"InvalidAccessKeyId":    storage.ErrPermission,
		"SignatureDoesNotMatch": storage.ErrPermission,
		// Allowed to use objects but not to look at the bucket: the object requests will tell.
		"AccessDenied": nil,
	} {
		status := map[string]int{"NoSuchBucket": 404}[code]
		if status == 0 {
			status = 403
		}
		opts, _ := fakeS3(t, status, code)
		be, err := Open(ctx, opts)
		if !errors.Is(err, want) || (want == nil && err != nil) {
			t.Errorf("Open when HEAD bucket answers %s: %v; want %v", code, err, want)
		}
		if want == nil && be != nil {
			if _, err := be.Stat(ctx, "config"); !errors.Is(err, storage.ErrPermission) {
				t.Errorf("Stat after an AccessDenied look-up: %v", err)
			}
		}
	}
}

func TestHeadNotFoundIsTheObject(t *testing.T) {
	// HEAD answers carry no body, so the code is unknown; a 404 on an object is that object missing.
	opts, _ := fakeS3(t, 404, "")
	be, _ := New(opts)
	if _, err := be.Stat(context.Background(), "config"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat: %v", err)
	}
}

func TestServerErrorsAreNotRetriedHere(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
	}{{500, "InternalError"}, {503, "SlowDown"}, {429, "TooManyRequests"}, {502, "BadGateway"}} {
		opts, n := fakeS3(t, tc.status, tc.code)
		be, _ := New(opts)
		err := storage.PutBytes(context.Background(), be, "index/i", []byte("data"))
		if err == nil || !strings.Contains(err.Error(), tc.code) || !strings.Contains(err.Error(), fmt.Sprint(tc.status)) {
			t.Errorf("Put against %d %s: %v", tc.status, tc.code, err)
		}
		for _, s := range []error{storage.ErrNotFound, storage.ErrPermission, storage.ErrNoBucket} {
			if errors.Is(err, s) {
				t.Errorf("%s maps to %v", tc.code, s)
			}
		}
		if !errors.Is(err, storage.ErrTransient) {
			t.Errorf("%s is not marked storage.ErrTransient, so the retry wrapper would not retry it: %v", tc.code, err)
		}
		if got := n.Load(); got != 1 {
			t.Errorf("%s: %d requests; want 1 (retrying is the retry wrapper's job)", tc.code, got)
		}
	}
}

func TestDeleteOfMissingIsFine(t *testing.T) {
	opts, _ := fakeS3(t, 404, "NoSuchKey")
	be, _ := New(opts)
	if err := be.Delete(context.Background(), "locks/l"); err != nil {
		t.Fatal(err)
	}
}

func TestStalledTransfersFail(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			// Headers and a few bytes, then nothing: a cut-off download.
			w.Header().Set("Content-Length", "1000")
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("ETag", `"e"`)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("abc"))
			w.(http.Flusher).Flush()
		}
		// A PUT is never answered.
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	be, err := New(Options{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "bkt", PlainHTTP: true,
		AccessKeyID: "a", SecretAccessKey: "b", BucketLookup: "path", Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now()
	_, err = storage.ReadAll(ctx, be, "data/00/p")
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "no progress") {
		t.Errorf("stalled Get: %v; want a no-progress timeout", err)
	}
	err = storage.PutBytes(ctx, be, "data/00/q", []byte("payload"))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("unanswered Put: %v; want a timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("two stalled requests took %s with a 300ms timeout", d)
	}
	// The caller's own cancellation stays a cancellation.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := storage.PutBytes(cctx, be, "data/00/r", []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a cancelled context: %v", err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	good := Options{Endpoint: "minio.local:9000", Bucket: "bkt"}
	for name, mutate := range map[string]func(*Options){
		"scheme in endpoint": func(o *Options) { o.Endpoint = "http://minio.local" },
		"no endpoint":        func(o *Options) { o.Endpoint = "" },
		"bucket name":        func(o *Options) { o.Bucket = "Not_A_Bucket" },
		"prefix with ..":     func(o *Options) { o.Prefix = "a/../b" },
		"bucket lookup":      func(o *Options) { o.BucketLookup = "virtual-host" },
		"tiny parts":         func(o *Options) { o.PartSize = 1 << 20 },
		"missing CA bundle":  func(o *Options) { o.CACertFile = "/nonexistent/ca.pem" },
	} {
		o := good
		mutate(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New(%+v) succeeded", name, o)
		}
	}
	be, err := New(Options{Endpoint: "minio.local:9000", Bucket: "bkt", Prefix: "/a/b/", AccessKeyID: "AK", SecretAccessKey: "SK"})
	if err != nil {
		t.Fatal(err)
	}
	if be.Location() != "s3://minio.local:9000/bkt/a/b" {
		t.Errorf("Location() = %s", be.Location())
	}
}

func TestRegionDefaults(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	if r := resolveRegion(""); r != "us-east-1" {
		t.Errorf("no region anywhere: %s", r)
	}
	t.Setenv("AWS_DEFAULT_REGION", "eu-west-2")
	if r := resolveRegion(""); r != "eu-west-2" {
		t.Errorf("AWS_DEFAULT_REGION: %s", r)
	}
	t.Setenv("AWS_REGION", "ap-south-1")
	if r := resolveRegion(""); r != "ap-south-1" {
		t.Errorf("AWS_REGION over AWS_DEFAULT_REGION: %s", r)
	}
	if r := resolveRegion("us-west-2"); r != "us-west-2" {
		t.Errorf("explicit region: %s", r)
	}
}

func TestClosedConnectionIsTransient(t *testing.T) {
	// The server reads the request and hangs up without answering, as a proxy or load balancer may.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	be, err := New(Options{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Bucket: "bkt", PlainHTTP: true,
		AccessKeyID: "AKID", SecretAccessKey: "secret", BucketLookup: "path"})
	if err != nil {
		t.Fatal(err)
	}
	err = storage.PutBytes(context.Background(), be, "index/i", []byte("data"))
	if !errors.Is(err, storage.ErrTransient) {
		t.Fatalf("Put to a server that hangs up: %v; want storage.ErrTransient", err)
	}
}
