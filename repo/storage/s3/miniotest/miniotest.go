// Package miniotest runs a real MinIO server for a test: on free ports of 127.0.0.1, over a fresh data
// directory, with random root credentials, stopped when the test ends.
//
//	srv := miniotest.Start(t)
//	be, err := s3.Create(ctx, srv.Options(srv.NewBucket(t), "repo"))
//
// The minio binary comes from $STRADDLE_MINIO_BIN, else bin/minio of the module (`make bin/minio` builds
// it), else $PATH. A missing binary fails the test rather than skipping it, so a tier that should have run
// cannot pass silently.
package miniotest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/straddle-io/straddle/repo/storage/s3"
)

// startTimeout bounds the wait for a started server to answer its health check.
const startTimeout = 30 * time.Second

// Server is a running MinIO server.
type Server struct {
	// Endpoint is host:port, as s3.Options and s3:// URLs take it.
	Endpoint string
	// AccessKey and SecretKey are the root credentials, random per server.
	AccessKey, SecretKey string
	// CACertFile is the PEM file of the server's self-signed certificate when it serves https (StartTLS), so
	// clients can trust it; empty for plain http.
	CACertFile string

	client  *minio.Client
	buckets atomic.Int64
}

// Start runs a MinIO server over plain http.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, "")
}

// StartTLS runs a MinIO server over https with a self-signed certificate for 127.0.0.1 and localhost, which
// CACertFile holds.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	certs := t.TempDir()
	if err := writeSelfSigned(certs); err != nil {
		t.Fatalf("make a certificate for minio: %v", err)
	}
	return start(t, certs)
}

// Options returns options for a backend on bucket and prefix of this server, with its credentials.
func (s *Server) Options(bucket, prefix string) s3.Options {
	return s3.Options{
		Endpoint:        s.Endpoint,
		Bucket:          bucket,
		Prefix:          prefix,
		PlainHTTP:       s.CACertFile == "",
		AccessKeyID:     s.AccessKey,
		SecretAccessKey: s.SecretKey,
		CACertFile:      s.CACertFile,
		BucketLookup:    "path",
	}
}

// URL returns the repository location of bucket and prefix as the CLI takes it: s3+http://… for plain http,
// s3://… for https.
func (s *Server) URL(bucket, prefix string) string {
	u := "s3+http://"
	if s.CACertFile != "" {
		u = "s3://"
	}
	u += s.Endpoint + "/" + bucket
	if prefix != "" {
		u += "/" + prefix
	}
	return u
}

// SetEnv points the AWS credential variables at this server for the rest of the test, the way the CLI and
// the s3 backend's credential chain read them.
func (s *Server) SetEnv(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
}

// NewBucket makes an empty bucket with a name no other call returns, and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("test-%d-%s", s.buckets.Add(1), randomHex(4))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
	return name
}

func start(t testing.TB, certsDir string) *Server {
	t.Helper()
	bin := findBinary(t)
	s := &Server{
		Endpoint:  freeAddr(t),
		AccessKey: "root" + randomHex(8),
		SecretKey: randomHex(20),
	}
	args := []string{"server", t.TempDir(), "--address", s.Endpoint, "--console-address", freeAddr(t)}
	if certsDir != "" {
		args = append(args, "--certs-dir", certsDir)
		s.CACertFile = filepath.Join(certsDir, "public.crt")
	}
	log := &syncBuffer{}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", // the console is not needed and costs start-up time
		"MINIO_UPDATE=off",
	)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("minio log:\n%s", log.String())
		}
	})

	httpClient, err := s.httpClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := waitLive(httpClient, s.healthURL(), exited); err != nil {
		t.Fatalf("minio at %s did not start: %v\nminio log:\n%s", s.Endpoint, err, log.String())
	}
	s.client, err = minio.New(s.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:    s.CACertFile != "",
		Transport: httpClient.Transport,
	})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	if err := s.waitIAM(httpClient); err != nil {
		t.Fatalf("minio at %s did not start: %v\nminio log:\n%s", s.Endpoint, err, log.String())
	}
	return s
}

// waitIAM waits until the server judges credentials. It serves the root user before its IAM sub-system is
// up, and until then answers any other key with XMinioIAMNotInitialized instead of refusing it, which tests
// of wrong credentials would take for the wrong answer.
func (s *Server) waitIAM(httpClient *http.Client) error {
	stranger, err := minio.New(s.Endpoint, &minio.Options{
		Creds:     credentials.NewStaticV4("not"+randomHex(8), randomHex(20), ""),
		Secure:    s.CACertFile != "",
		Transport: httpClient.Transport,
	})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := stranger.ListBuckets(ctx)
		cancel()
		code := minio.ToErrorResponse(err).Code
		if err != nil && code != "" && !strings.HasPrefix(code, "XMinio") {
			return nil // refused for its own reason: the server now judges credentials
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("credentials not judged within %s: %v", startTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) healthURL() string {
	scheme := "http"
	if s.CACertFile != "" {
		scheme = "https"
	}
	return scheme + "://" + s.Endpoint + "/minio/health/live"
}

// httpClient trusts the server's own certificate when it has one.
func (s *Server) httpClient() (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.CACertFile != "" {
		pem, err := os.ReadFile(s.CACertFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Second}, nil
}

func waitLive(c *http.Client, url string, exited <-chan error) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("minio exited: %v", err)
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			// Live answers 200 while the object layer is still starting, and says so only in this header;
			// requests made then fail with XMinioServerNotInitialized.
			status := resp.Header.Get("X-Minio-Server-Status")
			if resp.StatusCode == http.StatusOK && status != "offline" {
				return nil
			}
			err = fmt.Errorf("health check answered %s, server status %q", resp.Status, status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no healthy answer within %s: %v", startTimeout, last)
}

// findBinary looks where the package doc says.
func findBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("STRADDLE_MINIO_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("STRADDLE_MINIO_BIN=%s: %v", p, err)
		}
		return p
	}
	if root, err := moduleRoot(); err == nil {
		p := filepath.Join(root, "bin", "minio")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	t.Fatal("no minio binary: `make bin/minio` builds it (or set STRADDLE_MINIO_BIN, or put minio on PATH)")
	return ""
}

// moduleRoot walks up from the working directory (a test's package folder) to the folder holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// freeAddr picks a port the kernel says is free. Another process could take it before minio binds it; the
// start then fails with minio's log, which is rare enough not to retry.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// writeSelfSigned writes public.crt and private.key, the names minio looks for in its certs directory.
func writeSelfSigned(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "straddle test minio"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "public.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "private.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// syncBuffer collects minio's output, written from the process's pipes while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
