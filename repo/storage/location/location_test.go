package location

import "testing"

func TestParse(t *testing.T) {
	for in, want := range map[string]Location{
		"/srv/repo":                         {Scheme: "file", Path: "/srv/repo"},
		"file:///srv/repo/":                 {Scheme: "file", Path: "/srv/repo"},
		"s3://minio.local:9000/bkt":         {Scheme: "s3", Host: "minio.local:9000", Bucket: "bkt"},
		"s3+http://127.0.0.1:9000/bkt/a/b/": {Scheme: "s3+http", Host: "127.0.0.1:9000", Bucket: "bkt", Prefix: "a/b"},
	} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://x/y", "s3://host", "s3:///bucket", "file://host/path", "file://"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) succeeded", bad)
		}
	}
}
