package main

import (
	"bytes"
	"fmt"
	"strings"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// describeHooks lists the backup's exec hooks: where and what each ran, and how it ended.
func describeHooks(buf *bytes.Buffer, hooks []v1.HookResult) {
	if len(hooks) == 0 {
		return
	}
	fmt.Fprintf(buf, "\nHooks (%d):\n", len(hooks))
	tw := newTable(buf)
	fmt.Fprintln(tw, "  POD\tPHASE\tCONTAINER\tCOMMAND\tSTATE\tEXIT\tDURATION\tERROR")
	for _, h := range hooks {
		exit, took := "-", "-"
		if h.ExitCode != nil {
			exit = fmt.Sprint(*h.ExitCode)
		}
		if h.Duration != nil {
			took = h.Duration.Duration.String()
		}
		fmt.Fprintf(tw, "  %s/%s\t%s %d\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Namespace, h.Pod, h.Phase, h.Index, h.Container,
			oneLine(strings.Join(h.Command, " ")), h.State, exit, took, oneLine(h.Error))
	}
	_ = tw.Flush()
	for _, h := range hooks {
		for _, out := range []struct{ name, text string }{{"stdout", h.Stdout}, {"stderr", h.Stderr}} {
			if t := strings.TrimSpace(out.text); t != "" {
				fmt.Fprintf(buf, "  %s/%s %s %d %s:\n    %s\n", h.Namespace, h.Pod, h.Phase, h.Index, out.name, strings.ReplaceAll(t, "\n", "\n    "))
			}
		}
	}
}
