package main

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller"
)

func TestTimeoutFlagOfBackupsSchedulesAndRestores(t *testing.T) {
	spec, err := (&backupSpecFlags{timeout: "20s"}).spec()
	if err != nil || spec.Timeout == nil || spec.Timeout.Duration != 20*time.Second {
		t.Errorf("backup --timeout 20s: %+v, %v", spec.Timeout, err)
	}
	if spec, err = (&backupSpecFlags{}).spec(); err != nil || spec.Timeout != nil {
		t.Errorf("no --timeout must leave the install's default: %+v, %v", spec.Timeout, err)
	}
	if spec, err = (&backupSpecFlags{timeout: "0"}).spec(); err != nil || spec.Timeout == nil || spec.Timeout.Duration != 0 {
		t.Errorf("--timeout 0 is no bound: %+v, %v", spec.Timeout, err)
	}
	for _, bad := range []string{"soon", "-1h", "30d"} {
		if _, err := (&backupSpecFlags{timeout: bad}).spec(); err == nil || !strings.Contains(err.Error(), "--timeout") {
			t.Errorf("--timeout %q: %v, want an error naming the flag", bad, err)
		}
	}
	rs, err := (&restoreCreateOptions{fromBackup: "nightly", timeout: "90m"}).spec()
	if err != nil || rs.Timeout == nil || rs.Timeout.Duration != 90*time.Minute {
		t.Errorf("restore --timeout 90m: %+v, %v", rs.Timeout, err)
	}
}

func TestDescribeShowsTheTimeout(t *testing.T) {
	timedOut := []metav1.Condition{{Type: controller.ConditionTimedOut, Status: metav1.ConditionTrue, Message: "timed out after 20s"}}
	for _, c := range []struct {
		spec  *metav1.Duration
		conds []metav1.Condition
		want  string
	}{
		{nil, nil, "the install's default"},
		{&metav1.Duration{Duration: 4 * time.Hour}, nil, "4h"},
		{&metav1.Duration{}, nil, "none"},
		{&metav1.Duration{Duration: 20 * time.Second}, timedOut, "20s; timed out after 20s: the unfinished volumes failed, the finished ones were kept"},
	} {
		if got := timeoutText(c.spec, c.conds); got != c.want {
			t.Errorf("timeoutText(%v, %v) = %q, want %q", c.spec, c.conds, got, c.want)
		}
	}
	v := testBackupView()
	v.backup.Spec.Timeout = &metav1.Duration{Duration: 20 * time.Second}
	v.backup.Status.Conditions = timedOut
	if out := describeBackup(v, false, testNow); !strings.Contains(out, "Timeout:                       20s; timed out after 20s") {
		t.Errorf("backup describe does not show the timeout:\n%s", out)
	}
	r := &v1.Restore{Spec: v1.RestoreSpec{BackupName: "b", Timeout: &metav1.Duration{Duration: time.Hour}}}
	if out := describeRestore(r, nil, false, testNow); !strings.Contains(out, "Timeout:            1h\n") {
		t.Errorf("restore describe does not show the timeout:\n%s", out)
	}
}
