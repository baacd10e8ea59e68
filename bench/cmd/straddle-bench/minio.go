package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// minioStartTimeout bounds the wait for a started server to be ready.
const minioStartTimeout = 60 * time.Second

// minioServer is a MinIO server this harness started on 127.0.0.1 over a fresh data directory.
type minioServer struct {
	endpoint             string // host:port
	accessKey, secretKey string
	cmd                  *exec.Cmd
	exited               chan struct{}
	log                  string // file holding the server's output
}

// startMinio starts bin over dataDir on free ports of 127.0.0.1 with random root credentials and waits until
// it serves requests. The caller must call stop; the server also dies with the harness (parent-death signal),
// so an abrupt end of the harness does not leave it running.
func startMinio(ctx context.Context, bin, dataDir string) (*minioServer, error) {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("minio data directory: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	console, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &minioServer{
		endpoint:  addr,
		accessKey: "bench" + randomHex(8),
		secretKey: randomHex(20),
		exited:    make(chan struct{}),
		log:       dataDir + ".log",
	}
	logFile, err := os.Create(s.log)
	if err != nil {
		return nil, fmt.Errorf("minio log: %w", err)
	}
	defer logFile.Close()
	s.cmd = exec.Command(bin, "server", dataDir, "--address", addr, "--console-address", console, "--quiet")
	s.cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.accessKey,
		"MINIO_ROOT_PASSWORD="+s.secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		out, _ := os.ReadFile(s.log)
		return nil, fmt.Errorf("minio at %s did not start: %w\nminio log:\n%s", addr, err, out)
	}
	logf("  minio %s serving %s (pid %d)", addr, dataDir, s.cmd.Process.Pid)
	return s, nil
}

// env returns the credential variables both tools read.
func (s *minioServer) env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.accessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.secretKey,
		"AWS_SESSION_TOKEN=",
	}
}

// waitReady polls the liveness endpoint until it answers 200 without the "offline" server status, which MinIO
// reports while its object layer is still starting (requests made then fail).
func (s *minioServer) waitReady(ctx context.Context) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(minioStartTimeout)
	var last error = errors.New("no answer yet")
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("minio exited: %v", s.cmd.ProcessState)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := c.Get("http://" + s.endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			status := resp.Header.Get("X-Minio-Server-Status")
			if resp.StatusCode == http.StatusOK && status != "offline" {
				return nil
			}
			err = fmt.Errorf("health check answered %s, server status %q", resp.Status, status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %s: %w", minioStartTimeout, last)
}

// stop asks the server to end and kills it if it has not within ten seconds; it returns once it has exited.
func (s *minioServer) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// cpuSeconds is the server's user and system CPU time so far, from /proc; zero without a server.
func (s *minioServer) cpuSeconds() float64 {
	if s == nil {
		return 0
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.cmd.Process.Pid), "stat"))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces; utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	const ticks = 100 // USER_HZ on Linux
	return (utime + stime) / ticks
}

// objectBytes sums the sizes of the objects under prefix in bucket, as the S3 API lists them.
func (s *minioServer) objectBytes(ctx context.Context, bucket, prefix string) (int64, error) {
	c, err := minio.New(s.endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.accessKey, s.secretKey, "")})
	if err != nil {
		return 0, fmt.Errorf("minio client: %w", err)
	}
	var total int64
	n := 0
	for obj := range c.ListObjects(ctx, bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return 0, fmt.Errorf("list %s/%s: %w", bucket, prefix, obj.Err)
		}
		total += obj.Size
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("no objects under %s/%s", bucket, prefix)
	}
	return total, nil
}

// freeAddr picks a port of 127.0.0.1 the kernel says is free.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
