package location

import (
	"context"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Location{
		"/srv/repo":                         {Scheme: "file", Path: "/srv/repo"},
		"file:///srv/repo/":                 {Scheme: "file", Path: "/srv/repo"},
		"s3://minio.local:9000/bkt":         {Scheme: "s3", Host: "minio.local:9000", Bucket: "bkt"},
		"s3://s3.amazonaws.com/bkt/":        {Scheme: "s3", Host: "s3.amazonaws.com", Bucket: "bkt"},
		"s3+http://127.0.0.1:9000/bkt/a/b/": {Scheme: "s3+http", Host: "127.0.0.1:9000", Bucket: "bkt", Prefix: "a/b"},
		"s3://[::1]:9000/bkt/p":             {Scheme: "s3", Host: "[::1]:9000", Bucket: "bkt", Prefix: "p"},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x/y", "s3://host", "s3:///bucket", "file://host/path", "file://",
		"s3://host/bkt/a//b", "s3://host/bkt/a/../b", "s3://host/bkt/./b", "s3://host/bkt?region=x", "s3://host/bkt#p"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}

func TestParseNeverRepeatsCredentials(t *testing.T) {
	// The second one is not even a valid URL: the parser's own error would quote it.
	for _, in := range []string{"s3://AKIAKEY:sup3rsecret@host/bkt", "s3://AKIAKEY:sup3rsecret%zz@host/bkt"} {
		_, err := Parse(in)
		if err == nil || strings.Contains(err.Error(), "sup3rsecret") || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY") {
			t.Errorf("Parse(%s): err = %v; want a refusal that names the variables and not the secret", in, err)
		}
	}
}

func TestStringRoundTrips(t *testing.T) {
	for _, s := range []string{"s3://h:1/b", "s3+http://h/b/p/q", "/srv/repo"} {
		l, err := Parse(s)
		if err != nil || l.String() != s {
			t.Errorf("Parse(%q).String() = %q, %v", s, l.String(), err)
		}
	}
}

func TestS3Options(t *testing.T) {
	l, _ := Parse("s3+http://127.0.0.1:9000/bkt/a/b")
	o := l.S3Options(Options{Region: "eu-west-1", CACertFile: "/ca.pem", InsecureTLS: true, BucketLookup: "path"})
	if o.Endpoint != "127.0.0.1:9000" || o.Bucket != "bkt" || o.Prefix != "a/b" || !o.PlainHTTP ||
		o.Region != "eu-west-1" || o.CACertFile != "/ca.pem" || !o.InsecureSkipVerify || o.BucketLookup != "path" {
		t.Errorf("S3Options = %+v", o)
	}
	l, _ = Parse("s3://host/bkt")
	if o := l.S3Options(Options{}); o.PlainHTTP {
		t.Errorf("s3:// gave plain http: %+v", o)
	}
}

func TestOpenS3RejectsBadOptionsBeforeDialing(t *testing.T) {
	l, _ := Parse("s3+http://127.0.0.1:1/bkt")
	if _, err := Open(context.Background(), l, Options{BucketLookup: "virtual"}); err == nil || !strings.Contains(err.Error(), "auto, path or dns") {
		t.Errorf("bad bucket lookup: %v", err)
	}
	if _, err := Open(context.Background(), l, Options{CACertFile: "/nonexistent/ca.pem"}); err != nil {
		// Plain http needs no CA bundle; only the dial fails.
		if !strings.Contains(err.Error(), "127.0.0.1:1") {
			t.Errorf("dial error does not name the endpoint: %v", err)
		}
	} else {
		t.Error("opening a closed port succeeded")
	}
	l, _ = Parse("s3://127.0.0.1:1/bkt")
	if _, err := Open(context.Background(), l, Options{CACertFile: "/nonexistent/ca.pem"}); err == nil || !strings.Contains(err.Error(), "CA bundle") {
		t.Errorf("missing CA bundle: %v", err)
	}
	l, _ = Parse("s3://127.0.0.1:1/Bad_Bucket")
	if _, err := Open(context.Background(), l, Options{}); err == nil || !strings.Contains(err.Error(), "Bad_Bucket") {
		t.Errorf("invalid bucket name: %v", err)
	}
}
