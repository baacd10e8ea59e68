package hooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// OutputTail is how much of a hook's stdout and stderr the Backup's status keeps: the end, where errors are.
const OutputTail = 1024

// Run runs hook h in pod namespace/name and returns its outcome (State Succeeded or Failed, never Running).
// A hook still running at its timeout is cancelled: its exec stream is closed.
func Run(ctx context.Context, ex Executor, clk clock.PassiveClock, namespace, pod string, h Hook, res v1.HookResult) v1.HookResult {
	if h.Problem != "" {
		res.State, res.Error = v1.HookFailed, h.Problem
		return res
	}
	stdout, stderr := &tail{max: OutputTail}, &tail{max: OutputTail}
	start := clk.Now()
	runCtx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	err := ex.Exec(runCtx, namespace, pod, h.Container, h.Command, stdout, stderr)
	res.Duration = &metav1.Duration{Duration: clk.Now().Sub(start).Round(time.Millisecond)}
	res.Stdout, res.Stderr = stdout.String(), stderr.String()
	res.State = v1.HookSucceeded
	var coded interface{ ExitStatus() int }
	switch {
	case err == nil:
		zero := 0
		res.ExitCode = &zero
	case runCtx.Err() != nil && ctx.Err() == nil:
		res.State, res.Error = v1.HookFailed, fmt.Sprintf("timed out after %s", h.Timeout)
	case errors.As(err, &coded):
		code := coded.ExitStatus()
		res.State, res.ExitCode, res.Error = v1.HookFailed, &code, fmt.Sprintf("exited with code %d", code)
	default:
		res.State, res.Error = v1.HookFailed, err.Error()
	}
	return res
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.buf) }
