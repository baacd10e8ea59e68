//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// readyTimeout bounds the wait for a started server to answer /readyz.
const readyTimeout = 60 * time.Second

// server is a long-running straddle process (controller or node-agent) whose output goes to a log file that
// outlives restarts, so a failure shows what every run of it printed.
type server struct {
	name    string
	args    []string // without the probe address, which each start picks anew
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	probe  string
	done   chan struct{}
	err    error // set when done is closed
	killed bool  // the test killed this run on purpose
	starts int

	// metrics is the address of the current run's /metrics (under mu too).
	metrics string
}

// startServer runs straddle args as name, logging to logPath, and waits until it is ready.
func startServer(t testing.TB, name, logPath string, args ...string) *server {
	t.Helper()
	s := &server{name: name, args: args, logPath: logPath}
	// Registered first, so a server that never gets ready is stopped too.
	t.Cleanup(s.stop)
	s.start(t)
	return s
}

// start runs one more life of the server and waits for /readyz.
func (s *server) start(t testing.TB) {
	t.Helper()
	log, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("open the log of %s: %v", s.name, err)
	}
	probe, metrics := freeAddr(t), freeAddr(t)
	s.mu.Lock()
	s.starts++
	fmt.Fprintf(log, "=== e2e: start %d of %s at %s: straddle %s\n", s.starts, s.name, time.Now().Format(time.RFC3339Nano), strings.Join(s.args, " "))
	cmd := exec.Command(straddleBin, append(append([]string{}, s.args...), "--health-probe-bind-address", probe, "--metrics-bind-address", metrics)...)
	cmd.Stdout, cmd.Stderr = log, log
	// A test binary killed by its timeout runs no cleanup; its servers must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.mu.Unlock()
		log.Close()
		t.Fatalf("start %s: %v", s.name, err)
	}
	done := make(chan struct{})
	s.cmd, s.probe, s.metrics, s.done, s.err, s.killed = cmd, probe, metrics, done, nil, false
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		log.Close()
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(done)
	}()
	if err := s.waitReady(readyTimeout); err != nil {
		t.Fatalf("%s: %v\n%s", s.name, err, tail(s.logPath, 64<<10))
	}
}

// waitReady polls /readyz until it answers 200, the process exits, or timeout passes.
func (s *server) waitReady(timeout time.Duration) error {
	s.mu.Lock()
	probe, done := s.probe, s.done
	s.mu.Unlock()
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("exited before it was ready: %v", s.exitErr())
		default:
		}
		resp, err := c.Get("http://" + probe + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("/readyz answered %s", resp.Status)
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready within %v: %v", timeout, last)
}

// probeOnce asks the running server's /readyz once.
func (s *server) probeOnce() error {
	s.mu.Lock()
	probe := s.probe
	s.mu.Unlock()
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + probe + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

// pid is the process ID of the current run.
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// exited reports whether the current run has ended.
func (s *server) exited() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (s *server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// died reports an unexpected end of the current run: the process exited and the test did not kill it.
func (s *server) died() error {
	if !s.exited() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.killed {
		return nil
	}
	return fmt.Errorf("%s exited on its own: %v", s.name, s.err)
}

// kill9 SIGKILLs the current run, as a node losing power or an OOM kill would, and reaps it.
func (s *server) kill9(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.killed = true
	s.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill %s (pid %d): %v", s.name, cmd.Process.Pid, err)
	}
	<-done
	appendLog(s.logPath, fmt.Sprintf("=== e2e: killed %s (pid %d) with SIGKILL at %s\n", s.name, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano)))
}

// restart kills the current run with SIGKILL and starts a new one, waiting until it is ready.
func (s *server) restart(t testing.TB) {
	t.Helper()
	if !s.exited() {
		s.kill9(t)
	}
	s.start(t)
}

// stop ends the current run at the end of the test: SIGTERM, then SIGKILL after a grace period.
func (s *server) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.killed = true
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func appendLog(path, line string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line)
}

// tail returns at most the last max bytes of a log file, marked when cut.
func tail(path string, max int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	if int64(len(b)) > max {
		cut := b[int64(len(b))-max:]
		if i := bytes.IndexByte(cut, '\n'); i >= 0 {
			cut = cut[i+1:]
		}
		return fmt.Sprintf("(first %d bytes cut; whole log in %s)\n%s", int64(len(b))-int64(len(cut)), path, cut)
	}
	return string(b)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// cliResult is a finished straddle command.
type cliResult struct {
	args           []string
	stdout, stderr string
	err            error
}

func (r cliResult) String() string {
	return fmt.Sprintf("straddle %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.err, r.stdout, r.stderr)
}

// runStraddle runs straddle args to the end with extra environment variables, bounded by timeout. Safe to
// call from any goroutine.
func runStraddle(timeout time.Duration, env []string, args ...string) cliResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, straddleBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("did not end within %v, killed: %w", timeout, err)
	}
	return cliResult{args: args, stdout: stdout.String(), stderr: stderr.String(), err: err}
}

// metricsURL is the address of the current run's Prometheus metrics.
func (s *server) metricsURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "http://" + s.metrics + "/metrics"
}
