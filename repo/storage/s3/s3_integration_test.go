//go:build integration

package s3_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/s3"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
	"github.com/straddle-io/straddle/repo/storage/storagetest"
)

func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	t.Run("BucketRoot", func(t *testing.T) {
		be, err := s3.Open(ctx, srv.Options(srv.NewBucket(t), ""))
		if err != nil {
			t.Fatal(err)
		}
		storagetest.Run(t, be)
	})
	t.Run("PrefixAndSmallParts", func(t *testing.T) {
		// 5 MiB parts send the suite's large objects as multipart uploads.
		opts := srv.Options(srv.NewBucket(t), "team/repo")
		opts.PartSize = 5 << 20
		be, err := s3.Open(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		storagetest.Run(t, be)
	})
}

func TestPrefixesDoNotSeeEachOther(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	open := func(prefix string) *s3.Backend {
		be, err := s3.Open(ctx, srv.Options(bucket, prefix))
		if err != nil {
			t.Fatal(err)
		}
		return be
	}
	a, ab, root := open("a"), open("ab/"), open("")
	for _, be := range []*s3.Backend{a, ab} {
		if err := storage.PutBytes(ctx, be, "config", []byte(be.Location())); err != nil {
			t.Fatal(err)
		}
	}
	if err := storage.PutBytes(ctx, a, "data/00/p", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := names(t, a, ""); fmt.Sprint(got) != "[config data/00/p]" {
		t.Errorf("prefix a lists %v", got)
	}
	if got := names(t, ab, ""); fmt.Sprint(got) != "[config]" {
		t.Errorf("prefix ab lists %v", got)
	}
	if got := names(t, root, ""); fmt.Sprint(got) != "[a/config a/data/00/p ab/config]" {
		t.Errorf("the bucket root lists %v", got)
	}
	if got, err := storage.ReadAll(ctx, ab, "config"); err != nil || string(got) != ab.Location() {
		t.Errorf("ab's config = %q, %v", got, err)
	}
	want := "s3+http://" + srv.Endpoint + "/" + bucket + "/ab"
	if ab.Location() != want || root.Location() != "s3+http://"+srv.Endpoint+"/"+bucket {
		t.Errorf("Location() = %q and %q; want %q and no trailing slash at the root", ab.Location(), root.Location(), want)
	}
}

func TestFailedMultipartUploadIsAborted(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	opts := srv.Options(bucket, "repo")
	opts.PartSize = 5 << 20
	be, err := s3.Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	const size = 20 << 20
	err = be.Put(ctx, "data/cc/pack", failAfter{size * 3 / 4}, size)
	if err == nil || !strings.Contains(err.Error(), "repo/data/cc/pack") {
		t.Fatalf("Put from a failing body: %v; want an error naming the key", err)
	}
	if _, err := be.Stat(ctx, "data/cc/pack"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Stat after the failed upload: %v", err)
	}
	if n := incompleteUploads(t, srv, bucket, "repo/data/cc/pack"); n != 0 {
		t.Errorf("%d multipart uploads of the failed object left behind", n)
	}
	// The check can see an upload that was left behind.
	if _, err := (minio.Core{Client: rootClient(t, srv)}).NewMultipartUpload(ctx, bucket, "repo/data/cc/left", minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := incompleteUploads(t, srv, bucket, "repo/data/cc/left"); n != 1 {
		t.Errorf("listed %d incomplete uploads of an object with one", n)
	}
}

// incompleteUploads counts the multipart uploads of key in progress. MinIO lists them only for a whole key,
// not for a prefix of keys.
func incompleteUploads(t *testing.T, srv *miniotest.Server, bucket, key string) int {
	t.Helper()
	n := 0
	for up := range rootClient(t, srv).ListIncompleteUploads(context.Background(), bucket, key, false) {
		if up.Err != nil {
			t.Fatal(up.Err)
		}
		n++
	}
	return n
}

func TestWrongCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	good, err := s3.Open(ctx, srv.Options(bucket, "r"))
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.PutBytes(ctx, good, "config", []byte("c")); err != nil {
		t.Fatal(err)
	}
	wrongSecret := srv.Options(bucket, "r")
	wrongSecret.SecretAccessKey = "not-the-secret-1234"
	wrongKey := srv.Options(bucket, "r")
	wrongKey.AccessKeyID = "NOSUCHKEY"
	for name, opts := range map[string]s3.Options{"WrongSecret": wrongSecret, "WrongKey": wrongKey} {
		t.Run(name, func(t *testing.T) {
			_, err := s3.Open(ctx, opts)
			checkPermission(t, "Open", err, opts.SecretAccessKey)
			_, err = s3.Create(ctx, opts)
			checkPermission(t, "Create", err, opts.SecretAccessKey)
			be, err := s3.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = storage.ReadAll(ctx, be, "config")
			checkPermission(t, "Get", err, opts.SecretAccessKey)
			_, err = be.Stat(ctx, "config")
			checkPermission(t, "Stat", err, opts.SecretAccessKey)
			checkPermission(t, "Put", storage.PutBytes(ctx, be, "keys/k", []byte("k")), opts.SecretAccessKey)
			checkPermission(t, "List", be.List(ctx, "", func(storage.Info) error { return nil }), opts.SecretAccessKey)
			checkPermission(t, "Delete", be.Delete(ctx, "config"), opts.SecretAccessKey)
		})
	}
}

func checkPermission(t *testing.T, op string, err error, secret string) {
	t.Helper()
	if !errors.Is(err, storage.ErrPermission) {
		t.Errorf("%s with wrong credentials: %v; want ErrPermission", op, err)
		return
	}
	if msg := err.Error(); strings.Contains(msg, secret) || !strings.Contains(msg, "check the storage credentials") {
		t.Errorf("%s: message %q carries the secret or no advice", op, msg)
	}
}

func TestMissingBucket(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	opts := srv.Options("no-such-bucket", "r")
	if _, err := s3.Open(ctx, opts); !errors.Is(err, storage.ErrNoBucket) || !strings.Contains(err.Error(), "no-such-bucket") {
		t.Fatalf("Open of a missing bucket: %v", err)
	}
	be, err := s3.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Not ErrNotFound: a missing bucket must not read as an empty repository.
	if _, err := be.Get(ctx, "config", 0, -1); !errors.Is(err, storage.ErrNoBucket) {
		t.Fatalf("Get in a missing bucket: %v", err)
	}
	if _, err := be.Stat(ctx, "config"); !errors.Is(err, storage.ErrNoBucket) {
		t.Fatalf("Stat in a missing bucket: %v", err)
	}
	if err := be.List(ctx, "", func(storage.Info) error { return nil }); !errors.Is(err, storage.ErrNoBucket) {
		t.Fatalf("List in a missing bucket: %v", err)
	}

	// MinIO keeps no region per bucket but checks the signature's; a region other than the default must work.
	opts.Region = "eu-central-1"
	if _, err := s3.Create(ctx, opts); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if _, err := s3.Create(ctx, opts); err != nil {
		t.Fatalf("Create of an existing bucket: %v", err)
	}
	if _, err := s3.Open(ctx, opts); err != nil {
		t.Fatalf("Open after Create: %v", err)
	}
	if ok, err := rootClient(t, srv).BucketExists(ctx, "no-such-bucket"); !ok || err != nil {
		t.Errorf("the server does not see the bucket Create made: %v, %v", ok, err)
	}
}

func TestCredentialsFromEnvironmentAndSharedFile(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	opts := srv.Options(bucket, "")
	opts.AccessKeyID, opts.SecretAccessKey = "", ""
	noFile := filepath.Join(t.TempDir(), "none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", noFile)
	t.Setenv("AWS_CONFIG_FILE", noFile)
	t.Setenv("AWS_PROFILE", "")

	t.Run("Environment", func(t *testing.T) {
		srv.SetEnv(t)
		if _, err := s3.Open(ctx, opts); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("SharedFileProfile", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "credentials")
		content := fmt.Sprintf("[default]\naws_access_key_id = wrong\naws_secret_access_key = wrong\n\n[straddle]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
		t.Setenv("AWS_PROFILE", "straddle")
		if _, err := s3.Open(ctx, opts); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("None", func(t *testing.T) {
		_, err := s3.Open(ctx, opts)
		if !errors.Is(err, storage.ErrPermission) || !strings.Contains(err.Error(), "no credentials were found") {
			t.Fatalf("Open without credentials: %v", err)
		}
	})
}

func TestTLS(t *testing.T) {
	srv := miniotest.StartTLS(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	trusted := srv.Options(bucket, "r")
	be, err := s3.Open(ctx, trusted)
	if err != nil {
		t.Fatalf("with the CA bundle: %v", err)
	}
	if err := storage.PutBytes(ctx, be, "config", []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(be.Location(), "s3://") {
		t.Errorf("Location() = %s", be.Location())
	}

	untrusted := trusted
	untrusted.CACertFile = ""
	_, err = s3.Open(ctx, untrusted)
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) || !strings.Contains(err.Error(), "not trusted") {
		t.Fatalf("without the CA bundle: %v; want an untrusted-certificate error", err)
	}

	insecure := untrusted
	insecure.InsecureSkipVerify = true
	be, err = s3.Open(ctx, insecure)
	if err != nil {
		t.Fatalf("skipping verification: %v", err)
	}
	if got, err := storage.ReadAll(ctx, be, "config"); err != nil || string(got) != "over tls" {
		t.Fatalf("read over tls: %q, %v", got, err)
	}
}

func names(t *testing.T, be storage.Backend, prefix string) []string {
	t.Helper()
	var out []string
	if err := be.List(context.Background(), prefix, func(fi storage.Info) error {
		out = append(out, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

// rootClient looks at the server behind the backend's back.
func rootClient(t *testing.T, srv *miniotest.Server) *minio.Client {
	t.Helper()
	c, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// failAfter is a body of zeros whose reads fail from offset n on.
type failAfter struct{ n int64 }

func (f failAfter) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.n {
		n := max(0, int(f.n-off))
		clear(p[:n])
		return n, errors.New("body failed on purpose")
	}
	clear(p)
	return len(p), nil
}
