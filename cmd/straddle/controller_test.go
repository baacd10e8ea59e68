package main

import (
	"context"
	"strings"
	"testing"
)

func TestControllerRejectsAZeroCap(t *testing.T) {
	cmd := newRootCmd()
	cmd.SetArgs([]string{"controller", "--max-volumes-in-flight", "0"})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "--max-volumes-in-flight") {
		t.Fatalf("controller with a zero cap: %v", err)
	}
}
