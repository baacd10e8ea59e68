//go:build integration

package main

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// The schedule commands against a real API server, with the controller command running the Schedule
// reconciler (its registration and its cache of Schedules in the install namespace).
func TestScheduleCommandsWithTheController(t *testing.T) {
	kc, cl := controlPlane(t)
	ctx := context.Background()
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "straddle"}}); err != nil {
		t.Fatal(err)
	}
	runServer(t, "controller", "--kubeconfig", kc, "--namespace", "straddle")

	out := mustStraddle(t, "schedule", "create", "often", "--schedule", "@every 1s", "--include-namespaces", "app", "--keep-last", "2", "--ttl", "2h", "--kubeconfig", kc)
	if !strings.Contains(out, `Schedule "often" created`) {
		t.Errorf("create said %q", out)
	}
	if _, err := straddle(t, "schedule", "create", "often", "--schedule", "@daily", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second create: %v", err)
	}
	var s v1.Schedule
	key := client.ObjectKey{Namespace: "straddle", Name: "often"}
	if err := cl.Get(ctx, key, &s); err != nil {
		t.Fatal(err)
	}
	if s.Spec.Retention == nil || s.Spec.Retention.KeepLast != 2 || s.Spec.Template.TTL == nil || s.Spec.Template.IncludedNamespaces[0] != "app" {
		t.Errorf("schedule spec %+v", s.Spec)
	}

	// No storage location exists, so each Backup fails at once; the schedule still makes one per tick.
	var backups v1.BackupList
	waitFor(t, "the schedule's backups", func() bool {
		return cl.List(ctx, &backups, client.InNamespace("straddle"), client.MatchingLabels{v1.ScheduleLabel: "often"}) == nil && len(backups.Items) >= 2
	})
	for _, b := range backups.Items {
		if !strings.HasPrefix(b.Name, "often-") || len(b.OwnerReferences) != 0 {
			t.Errorf("backup %s, owners %v", b.Name, b.OwnerReferences)
		}
	}
	if out := mustStraddle(t, "schedule", "get", "--kubeconfig", kc); !strings.Contains(out, "often") || !strings.Contains(out, "@every 1s") {
		t.Errorf("get:\n%s", out)
	}

	mustStraddle(t, "schedule", "pause", "often", "--kubeconfig", kc)
	waitFor(t, "the schedule to show it is paused", func() bool {
		return cl.Get(ctx, key, &s) == nil && s.Status.NextRunTime == nil && s.Status.Message != ""
	})
	if out := mustStraddle(t, "schedule", "get", "often", "--kubeconfig", kc); !strings.Contains(out, "paused") {
		t.Errorf("get while paused:\n%s", out)
	}
	if out := mustStraddle(t, "schedule", "get", "often", "-o", "yaml", "--kubeconfig", kc); !strings.Contains(out, "kind: Schedule") || !strings.Contains(out, "keepLast: 2") {
		t.Errorf("get -o yaml:\n%s", out)
	}
	if out := mustStraddle(t, "schedule", "describe", "often", "--kubeconfig", kc); !strings.Contains(out, "keep-last 2") || !strings.Contains(out, "Backups (") || !strings.Contains(out, "Created") {
		t.Errorf("describe:\n%s", out)
	}
	mustStraddle(t, "schedule", "unpause", "often", "--kubeconfig", kc)
	waitFor(t, "the schedule to run again", func() bool { return cl.Get(ctx, key, &s) == nil && s.Status.NextRunTime != nil })

	out = mustStraddle(t, "schedule", "delete", "often", "--kubeconfig", kc)
	if !strings.Contains(out, "are kept") {
		t.Errorf("delete said %q", out)
	}
	waitFor(t, "the schedule to go", func() bool { return apierrors.IsNotFound(cl.Get(ctx, key, &s)) })
	if err := cl.List(ctx, &backups, client.InNamespace("straddle"), client.MatchingLabels{v1.ScheduleLabel: "often"}); err != nil || len(backups.Items) < 2 {
		t.Errorf("after the schedule was deleted %d of its backups remain (%v); want them kept", len(backups.Items), err)
	}
	if _, err := straddle(t, "schedule", "describe", "often", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), `schedule "often" not found`) {
		t.Errorf("describe after delete: %v", err)
	}
}
