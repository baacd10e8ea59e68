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

func TestControllerRestoreFlags(t *testing.T) {
	cmd := newRootCmd()
	cmd.SetArgs([]string{"controller", "--restore-volume-timeout", "0s"})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "--restore-volume-timeout") {
		t.Fatalf("controller with a zero restore volume timeout: %v", err)
	}
	c := newControllerCmd()
	if err := c.ParseFlags([]string{"--restore-resource-priorities", "persistentvolumeclaims,pods"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Flags().GetStringSlice("restore-resource-priorities"); strings.Join(got, ",") != "persistentvolumeclaims,pods" {
		t.Errorf("priorities %q", got)
	}
	if d, _ := c.Flags().GetDuration("restore-volume-timeout"); d.String() != "4h0m0s" {
		t.Errorf("default timeout %s", d)
	}
}

func TestControllerBackupSyncFlag(t *testing.T) {
	cmd := newRootCmd()
	cmd.SetArgs([]string{"controller", "--backup-sync-period", "-1s"})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "--backup-sync-period") {
		t.Fatalf("controller with a negative sync period: %v", err)
	}
	c := newControllerCmd()
	if d, _ := c.Flags().GetDuration("backup-sync-period"); d.String() != "1m0s" {
		t.Errorf("default sync period %s, want 1m0s", d)
	}
	if err := c.ParseFlags([]string{"--backup-sync-period", "0"}); err != nil {
		t.Fatalf("0 (sync disabled) refused: %v", err)
	}
}
