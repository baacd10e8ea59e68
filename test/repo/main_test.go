//go:build integration

// Package repo proves, with real straddle processes against a real MinIO server, that the repository stays
// correct when writers run at once with prune, when a backup is SIGKILLed, and when a killed process leaves a
// lock behind. TestMain builds the straddle binary once; every test starts its own MinIO.
package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// straddleBin is the binary TestMain built.
var straddleBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "straddle-proofs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	straddleBin = filepath.Join(tmp, "straddle")
	build := exec.Command("go", "build", "-o", straddleBin, "./cmd/straddle")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build straddle in %s: %v\n%s", root, err, out)
		return 1
	}
	return m.Run()
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fileExists(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a straddle process running in the background. The test's cleanup resumes and kills it if it still
// runs, and waits for it, so no child outlives the test.
type proc struct {
	args           []string
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error // set when done is closed
}

// start runs straddle with args in the background.
func start(t testing.TB, args ...string) *proc {
	t.Helper()
	p := &proc{args: args, done: make(chan struct{})}
	p.cmd = exec.Command(straddleBin, args...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start straddle %s: %v", strings.Join(args, " "), err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// pid is the process ID, which its locks name.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// wait waits up to timeout for the process to end and returns its error; past the timeout it kills it and
// fails the test.
func (p *proc) wait(t testing.TB, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("straddle %s did not end within %v; stderr:\n%s", strings.Join(p.args, " "), timeout, p.stderr.String())
		return nil
	}
}

// kill SIGKILLs the process and reaps it: a zombie's pid still exists, which would keep its lock live.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill pid %d: %v", p.pid(), err)
	}
	<-p.done
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// result is a finished straddle run.
type result struct {
	stdout, stderr string
	elapsed        time.Duration
	err            error
}

// runE runs straddle with args to the end, bounded by timeout; safe to call from any goroutine.
func runE(timeout time.Duration, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, straddleBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String(), elapsed: time.Since(begin), err: err}
	if ctx.Err() != nil {
		res.err = fmt.Errorf("straddle %s did not end within %v (killed); stderr:\n%s", strings.Join(args, " "), timeout, res.stderr)
	}
	return res
}

// run runs straddle with args to the end, bounded by timeout.
func run(t testing.TB, timeout time.Duration, args ...string) result {
	t.Helper()
	res := runE(timeout, args...)
	if res.err != nil && strings.Contains(res.err.Error(), "did not end within") {
		t.Fatal(res.err)
	}
	return res
}

// mustRun runs straddle and fails the test unless it succeeds.
func mustRun(t testing.TB, timeout time.Duration, args ...string) result {
	t.Helper()
	res := run(t, timeout, args...)
	if res.err != nil {
		t.Fatalf("straddle %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), res.err, res.stdout, res.stderr)
	}
	return res
}

// decode parses the JSON a --json run printed.
func decode[T any](t testing.TB, res result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		t.Fatalf("decode %q: %v", res.stdout, err)
	}
	return v
}

// backupJSON is the part of `repo backup --json` the tests read.
type backupJSON struct {
	SnapshotID string `json:"snapshot_id"`
	FilesNew   uint64 `json:"files_new"`
	BytesTotal uint64 `json:"bytes_total"`
	BytesAdded uint64 `json:"bytes_added"`
}

// pruneJSON is the part of `repo prune --json` the tests read.
type pruneJSON struct {
	Packs          int   `json:"packs"`
	UnindexedPacks int   `json:"unindexed_packs"`
	PacksDeleted   int   `json:"packs_deleted"`
	PacksRepacked  int   `json:"packs_repacked"`
	PacksKept      int   `json:"packs_kept"`
	BytesFreed     int64 `json:"bytes_freed"`
}

// checkJSON is `repo check --json`.
type checkJSON struct {
	OK         bool              `json:"ok"`
	Errors     []json.RawMessage `json:"errors"`
	Notes      []json.RawMessage `json:"notes"`
	Snapshots  int               `json:"snapshots"`
	IndexFiles int               `json:"index_files"`
	Packs      int               `json:"packs"`
	PacksRead  int               `json:"packs_read"`
}

// snapshotJSON is one entry of `repo snapshots --json`.
type snapshotJSON struct {
	ID   string `json:"id"`
	Host string `json:"host"`
}

// checkClean runs check (with extra flags) and fails the test on any error it reports.
func checkClean(t testing.TB, url string, extra ...string) checkJSON {
	t.Helper()
	args := append([]string{"repo", "check", "--repo", url, "--json", "--lock-wait", "1m"}, extra...)
	res := run(t, 3*time.Minute, args...)
	if res.err != nil {
		t.Fatalf("check %v failed: %v\nstdout:\n%s\nstderr:\n%s", extra, res.err, res.stdout, res.stderr)
	}
	c := decode[checkJSON](t, res)
	if !c.OK || len(c.Errors) > 0 {
		t.Fatalf("check %v found errors: %s", extra, res.stdout)
	}
	return c
}

// decodeE parses the JSON a --json run printed; safe to call from any goroutine.
func decodeE[T any](res result) (T, error) {
	var v T
	if err := json.Unmarshal([]byte(res.stdout), &v); err != nil {
		return v, fmt.Errorf("decode %q: %w", res.stdout, err)
	}
	return v, nil
}
