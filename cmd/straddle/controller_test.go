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

func TestControllerWebhookFlags(t *testing.T) {
	for _, tc := range []struct{ args, err string }{
		{"--webhook-port 0 --webhook-url https://127.0.0.1:9443", "--webhook-url needs the webhook on"},
		{"--webhook-port 70000", "--webhook-port 70000 is not a port"},
		{"--webhook-url http://127.0.0.1:9443", "must be an https URL"},
		{"--webhook-url https://:9443", "must be an https URL"},
	} {
		cmd := newRootCmd()
		cmd.SetArgs(append([]string{"controller"}, strings.Fields(tc.args)...))
		if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("controller %s: %v, want an error saying %q", tc.args, err, tc.err)
		}
	}
	o := &controllerOptions{webhookPort: 9443, webhookURL: "https://127.0.0.1:9443/"}
	o.namespace = "backup-system"
	w, err := o.webhookOptions()
	if err != nil {
		t.Fatal(err)
	}
	if w.url != "https://127.0.0.1:9443/mutate-v1-pod-restore-wait" || len(w.hosts.IPs) != 1 || w.hosts.IPs[0].String() != "127.0.0.1" ||
		strings.Join(w.hosts.DNSNames, ",") != "straddle-webhook.backup-system.svc,straddle-webhook.backup-system.svc.cluster.local" {
		t.Errorf("webhook %+v", w)
	}
	o.webhookURL = "https://straddle.dev.example:8443"
	if w, err := o.webhookOptions(); err != nil || !strings.Contains(strings.Join(w.hosts.DNSNames, ","), "straddle.dev.example") || len(w.hosts.IPs) != 0 {
		t.Errorf("webhook %+v, %v", w, err)
	}
	o.webhookPort = 0
	o.webhookURL = ""
	if w, err := o.webhookOptions(); w != nil || err != nil {
		t.Errorf("port 0: %+v, %v; want the webhook off", w, err)
	}
}
