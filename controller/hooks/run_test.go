package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/exec"
	"k8s.io/utils/clock"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

type fakeExec func(ctx context.Context, stdout, stderr io.Writer) error

func (f fakeExec) Exec(ctx context.Context, _, _, _ string, _ []string, stdout, stderr io.Writer) error {
	return f(ctx, stdout, stderr)
}

func TestRun(t *testing.T) {
	hook := Hook{Phase: v1.HookPhasePre, Container: "main", Command: []string{"x"}, Timeout: time.Second, OnError: v1.HookErrorFail}
	for name, c := range map[string]struct {
		exec      fakeExec
		hook      func(Hook) Hook
		state     v1.HookState
		exitCode  int
		errSubstr string
	}{
		"success": {exec: func(_ context.Context, out, _ io.Writer) error { fmt.Fprint(out, "flushed"); return nil }, state: v1.HookSucceeded},
		"exit code": {exec: func(_ context.Context, _, errw io.Writer) error {
			fmt.Fprint(errw, "boom")
			return exec.CodeExitError{Err: errors.New("command terminated with non-zero exit code"), Code: 3}
		}, state: v1.HookFailed, exitCode: 3, errSubstr: "exited with code 3"},
		"hangs": {exec: func(ctx context.Context, _, _ io.Writer) error { <-ctx.Done(); return ctx.Err() },
			hook: func(h Hook) Hook { h.Timeout = 50 * time.Millisecond; return h }, state: v1.HookFailed, exitCode: -1, errSubstr: "timed out after 50ms"},
		"stream error": {exec: func(context.Context, io.Writer, io.Writer) error { return errors.New("container not found") },
			state: v1.HookFailed, exitCode: -1, errSubstr: "container not found"},
		"problem": {exec: func(context.Context, io.Writer, io.Writer) error { t.Error("ran a hook with a problem"); return nil },
			hook: func(h Hook) Hook { h.Problem = "bad JSON"; return h }, state: v1.HookFailed, exitCode: -1, errSubstr: "bad JSON"},
	} {
		t.Run(name, func(t *testing.T) {
			h := hook
			if c.hook != nil {
				h = c.hook(h)
			}
			res := Run(context.Background(), c.exec, clock.RealClock{}, "app", "db", h, v1.HookResult{Index: 7})
			if res.State != c.state || res.Index != 7 {
				t.Fatalf("got %+v, want state %s", res, c.state)
			}
			switch {
			case c.exitCode < 0 && res.ExitCode != nil:
				t.Errorf("exit code %d, want none", *res.ExitCode)
			case c.exitCode >= 0 && (res.ExitCode == nil || *res.ExitCode != c.exitCode):
				t.Errorf("exit code %v, want %d", res.ExitCode, c.exitCode)
			}
			if !strings.Contains(res.Error, c.errSubstr) || (c.errSubstr == "" && res.Error != "") {
				t.Errorf("error %q, want %q", res.Error, c.errSubstr)
			}
		})
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	out := &tail{max: 4}
	fmt.Fprint(out, "abc")
	fmt.Fprint(out, "defgh")
	if out.String() != "efgh" {
		t.Fatalf("got %q", out.String())
	}
}
