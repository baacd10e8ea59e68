// Command straddle-restore-helper is the restore-wait init container of a restored pod: it exits 0 once
// every restored volume's data is in place, so the app starts only on complete data (DESIGN.md §8).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	restorehelper "github.com/straddle-io/straddle/restore-helper"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run parses the flags and waits; it returns the exit code: 0 restored, 1 timed out, stopped or failed, 2 bad
// flags.
func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := flag.NewFlagSet("straddle-restore-helper", flag.ContinueOnError)
	fs.SetOutput(errOut)
	var o restorehelper.Options
	fs.StringVar(&o.RestoreUID, "restore-uid", "", "UID of the Restore whose markers to wait for")
	fs.StringVar(&o.RestoresDir, "restores-dir", "/restores", "folder holding one mounted folder per restored volume")
	fs.DurationVar(&o.Timeout, "timeout", 4*time.Hour, "give up after this long (0 waits forever)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(errOut, "straddle-restore-helper: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.Timeout < 0 {
		fmt.Fprintf(errOut, "straddle-restore-helper: --timeout %s is negative\n", o.Timeout)
		return 2
	}
	if err := restorehelper.Wait(ctx, o, out); err != nil {
		fmt.Fprintf(errOut, "straddle-restore-helper: %v\n", err)
		return 1
	}
	return 0
}
