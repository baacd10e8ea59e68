package main

import (
	"context"
	"strings"
	"testing"
)

func TestMaintenanceFlags(t *testing.T) {
	for _, args := range [][]string{
		{"controller", "--maintenance-retry-delay", "0s"},
		{"controller", "--maintenance-stale-after", "-1s"},
		{"node-agent", "--node-name", "n", "--prune-max-wait", "0s"},
		{"node-agent", "--node-name", "n", "--maintenance-heartbeat-interval", "0s"},
	} {
		cmd := newRootCmd()
		cmd.SetArgs(args)
		if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), args[len(args)-2]) {
			t.Errorf("%v: %v, want an error naming %s", args, err, args[len(args)-2])
		}
	}
	c := newControllerCmd()
	if d, _ := c.Flags().GetDuration("maintenance-retry-delay"); d.String() != "5m0s" {
		t.Errorf("default retry delay %s", d)
	}
	if d, _ := c.Flags().GetDuration("maintenance-stale-after"); d.String() != "2m0s" {
		t.Errorf("default stale-after %s", d)
	}
	n := newNodeAgentCmd()
	if d, _ := n.Flags().GetDuration("prune-max-wait"); d.String() != "10m0s" {
		t.Errorf("default prune max wait %s", d)
	}
	if d, _ := n.Flags().GetDuration("maintenance-heartbeat-interval"); d.String() != "30s" {
		t.Errorf("default heartbeat interval %s", d)
	}
}
