package main

import (
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
	"time"
)

// readyTimeout bounds the wait for a started server to answer its health endpoint.
const readyTimeout = 90 * time.Second

// proc is a long-running child process (a straddle server or MinIO) whose output goes to a log file.
type proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd

	mu   sync.Mutex
	done chan struct{}
	err  error // set when done is closed
	stop bool  // the demo is stopping it, so its end is no failure
}

// startProc runs bin args as name with its output in logPath. The process dies with the demo even when the
// demo is killed without running its cleanup (SIGKILL).
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	p := &proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// waitHealthy polls url until it answers 200, the process exits, or readyTimeout passes.
func (p *proc) waitHealthy(ctx context.Context, url string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	var last error
	for deadline := time.Now().Add(readyTimeout); time.Now().Before(deadline); {
		if err := p.died(); err != nil {
			return err
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready within %v: %v", p.name, readyTimeout, last)
}

// died reports an end of the process that the demo did not ask for.
func (p *proc) died() error {
	select {
	case <-p.done:
	default:
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stop {
		return nil
	}
	return fmt.Errorf("%s exited on its own: %v (log: %s)", p.name, p.err, p.logPath)
}

// terminate ends the process: SIGTERM, then SIGKILL after a grace period.
func (p *proc) terminate() {
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the last lines of the process's log, for a failure's report.
func (p *proc) tail(lines int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.logPath, err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
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

// procs are the demo's children, stopped together.
type procs []*proc

func (ps procs) died() error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, p.died())
	}
	return errors.Join(errs...)
}

// terminate stops every process at once: each may take seconds to shut down gracefully.
func (ps procs) terminate() {
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Go(p.terminate)
	}
	wg.Wait()
}
