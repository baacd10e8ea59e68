// Command straddle installs Straddle, drives backups and restores, runs its servers, and reads repositories
// with no cluster at all.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The heap is mostly large pointer-free buffers (chunks, packs), which the collector frees almost
		// for free: collecting often keeps the resident size near what is live.
		debug.SetGCPercent(25)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "straddle: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries an exit code other than 1, such as 3 for a backup that skipped unreadable files.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
