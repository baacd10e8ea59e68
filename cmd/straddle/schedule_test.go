package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

func scheduleTestClient(t *testing.T, objs ...client.Object) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(&v1.Schedule{}).Build()
}

func testSchedule(name string, mutate func(*v1.Schedule)) *v1.Schedule {
	s := &v1.Schedule{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle"}, Spec: v1.ScheduleSpec{Schedule: "0 3 * * *"}}
	if mutate != nil {
		mutate(s)
	}
	return s
}

func scheduledBackup(schedule, name string, phase v1.Phase) *v1.Backup {
	return &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle", Labels: map[string]string{v1.ScheduleLabel: schedule}},
		Status: v1.BackupStatus{Phase: phase}}
}

// Bad input is refused with one sentence naming the flag, before any cluster is contacted.
func TestScheduleCreateRefusesBadInput(t *testing.T) {
	kc := "/nonexistent/kubeconfig"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"Bad_Name", "--schedule", "@daily"}, `schedule name "Bad_Name" is not valid`},
		{[]string{strings.Repeat("a", 49), "--schedule", "@daily"}, "at most 48"},
		{[]string{"ok"}, "--schedule is required"},
		{[]string{"ok", "--schedule", "0 3 * *"}, `--schedule: schedule "0 3 * *" is not a cron expression`},
		{[]string{"ok", "--schedule", "@every five"}, "is not a cron expression"},
		{[]string{"ok", "--schedule", "0 0 30 2 *"}, "never fires"},
		{[]string{"ok", "--schedule", "@daily", "--keep-daily", "-1"}, "--keep-daily -1: a count cannot be negative"},
		{[]string{"ok", "--schedule", "@daily", "--selector", "app in (web"}, `--selector "app in (web" is not a label selector`},
		{[]string{"ok", "--schedule", "@daily", "--ttl", "0s"}, `--ttl "0s" is not a positive duration`},
		{[]string{"ok", "--schedule", "@daily", "--include-namespaces", "B_c"}, `--include-namespaces: "B_c" is not a namespace name`},
	} {
		_, err := straddle(t, append([]string{"schedule", "create", "--kubeconfig", kc}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("schedule create %v: %v, want %q", c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("schedule create %v: error spans lines: %q", c.args, err)
		}
	}
	if _, err := straddle(t, "schedule", "get", "-o", "xml", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "want json or yaml") {
		t.Errorf("get -o xml: %v", err)
	}
}

func TestScheduleCreateBuildsTheSchedule(t *testing.T) {
	o := &scheduleCreateOptions{backupFlags: &backupFlags{namespace: "straddle"}}
	fl := pflag.NewFlagSet("create", pflag.ContinueOnError)
	o.register(fl)
	if err := fl.Parse([]string{"--schedule", "@every 5s", "--keep-last", "3", "--keep-weekly", "4", "--paused", "--include-namespaces", "shop",
		"--selector", "app=db", "--ttl", "10d", "--default-volumes-to-fs-backup", "--storage-location", "minio"}); err != nil {
		t.Fatal(err)
	}
	s, err := o.build("often")
	if err != nil {
		t.Fatal(err)
	}
	tp := s.Spec.Template
	if s.Name != "often" || s.Namespace != "straddle" || s.Spec.Schedule != "@every 5s" || !s.Spec.Paused {
		t.Errorf("schedule %+v", s)
	}
	if s.Spec.Retention == nil || *s.Spec.Retention != (v1.RetentionPolicy{KeepLast: 3, KeepWeekly: 4}) {
		t.Errorf("retention %+v", s.Spec.Retention)
	}
	if len(tp.IncludedNamespaces) != 1 || tp.LabelSelector.MatchLabels["app"] != "db" || tp.TTL.Duration != 240*time.Hour ||
		tp.DefaultVolumesToFsBackup == nil || !*tp.DefaultVolumesToFsBackup || tp.StorageLocation != "minio" {
		t.Errorf("template %+v", tp)
	}
	plain, err := (&scheduleCreateOptions{backupFlags: &backupFlags{}, schedule: "@daily"}).build("plain")
	if err != nil || plain.Spec.Retention != nil || plain.Spec.Paused {
		t.Errorf("no retention flags: %+v, %v; want no policy (every backup kept until its TTL)", plain.Spec, err)
	}
}

func TestCreateScheduleOutput(t *testing.T) {
	cl := scheduleTestClient(t)
	var out bytes.Buffer
	now := time.Date(2026, 11, 25, 1, 0, 0, 0, time.UTC)
	if err := createSchedule(context.Background(), cl, testSchedule("nightly", nil), now, &out); err != nil {
		t.Fatal(err)
	}
	if want := `Schedule "nightly" created (first backup at about 2026-11-25 03:00:00 UTC)`; !strings.Contains(out.String(), want) {
		t.Errorf("output %q, want %q", out.String(), want)
	}
	err := createSchedule(context.Background(), cl, testSchedule("nightly", nil), now, &out)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second create: %v", err)
	}
	out.Reset()
	if err := createSchedule(context.Background(), cl, testSchedule("later", func(s *v1.Schedule) { s.Spec.Paused = true }), now, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "paused: no backups until straddle schedule unpause later") {
		t.Errorf("paused output %q", out.String())
	}
	err = createSchedule(context.Background(), cl, testSchedule("elsewhere", func(s *v1.Schedule) { s.Spec.Template.StorageLocation = "nope" }), now, &out)
	if err == nil || !strings.Contains(err.Error(), `storage location "nope" not found`) {
		t.Errorf("missing location: %v", err)
	}
}

func TestScheduleTable(t *testing.T) {
	schedules := []v1.Schedule{
		*testSchedule("nightly", func(s *v1.Schedule) {
			s.Status = v1.ScheduleStatus{LastBackup: "nightly-20261125030000", LastBackupTime: at(-9 * time.Hour), NextRunTime: at(15 * time.Hour)}
		}),
		*testSchedule("held", func(s *v1.Schedule) { s.Spec.Paused = true; s.Spec.Schedule = "@every 5s" }),
		*testSchedule("broken", func(s *v1.Schedule) { s.Spec.Schedule = "61 * * * *"; s.Status.Message = "not a cron expression" }),
		*testSchedule("late", func(s *v1.Schedule) { s.Status.NextRunTime = at(-time.Minute) }),
	}
	table := scheduleTable(schedules, testNow)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	for i, fields := range [][]string{
		{"NAME", "SCHEDULE", "PAUSED", "LAST BACKUP", "AGE OF LAST", "NEXT RUN"},
		{"nightly", "0 3 * * *", "false", "nightly-20261125030000", "9h ago", "in 15h"},
		{"held", "@every 5s", "true", "-", "-", "paused"},
		{"broken", "61 * * * *", "false", "-", "-", "invalid"},
		{"late", "0 3 * * *", "false", "-", "-", "due"},
	} {
		var got []string
		for _, c := range strings.Split(lines[i], "  ") {
			if c = strings.TrimSpace(c); c != "" {
				got = append(got, c)
			}
		}
		if strings.Join(got, "|") != strings.Join(fields, "|") {
			t.Errorf("line %d = %q, want cells %q", i, lines[i], fields)
		}
	}
	for _, col := range []string{"SCHEDULE", "PAUSED", "LAST BACKUP", "NEXT RUN"} {
		columnsAligned(t, table, col)
	}
}

func TestGetSchedules(t *testing.T) {
	cl := scheduleTestClient(t, testSchedule("b", nil), testSchedule("a", nil))
	var out bytes.Buffer
	if err := getSchedules(context.Background(), cl, "straddle", "", "", testNow, &out); err != nil {
		t.Fatal(err)
	}
	if i, j := strings.Index(out.String(), "\na "), strings.Index(out.String(), "\nb "); i < 0 || j < i {
		t.Errorf("table not sorted by name:\n%s", out.String())
	}
	out.Reset()
	if err := getSchedules(context.Background(), cl, "straddle", "a", "json", testNow, &out); err != nil {
		t.Fatal(err)
	}
	var s v1.Schedule
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s.Name != "a" || s.Kind != "Schedule" {
		t.Errorf("json: %v, %+v", err, s.TypeMeta)
	}
	out.Reset()
	if err := getSchedules(context.Background(), scheduleTestClient(t), "straddle", "", "", testNow, &out); err != nil || !strings.Contains(out.String(), "No schedules in namespace straddle") {
		t.Errorf("empty: %v, %q", err, out.String())
	}
	if err := getSchedules(context.Background(), cl, "straddle", "zzz", "", testNow, &out); err == nil || !strings.Contains(err.Error(), `schedule "zzz" not found in namespace straddle`) {
		t.Errorf("missing: %v", err)
	}
}

func TestPauseAndUnpause(t *testing.T) {
	cl := scheduleTestClient(t, testSchedule("nightly", nil))
	var out bytes.Buffer
	ctx := context.Background()
	for _, step := range []struct {
		pause bool
		want  string
	}{
		{true, `Schedule "nightly" paused`},
		{true, `Schedule "nightly" is already paused`},
		{false, `Schedule "nightly" unpaused`},
		{false, `Schedule "nightly" is not paused`},
	} {
		out.Reset()
		if err := setSchedulePaused(ctx, cl, "straddle", "nightly", step.pause, &out); err != nil {
			t.Fatal(err)
		}
		var s v1.Schedule
		if err := cl.Get(ctx, client.ObjectKey{Namespace: "straddle", Name: "nightly"}, &s); err != nil {
			t.Fatal(err)
		}
		if s.Spec.Paused != step.pause || !strings.Contains(out.String(), step.want) {
			t.Errorf("pause=%v: paused %v, output %q; want %q", step.pause, s.Spec.Paused, out.String(), step.want)
		}
	}
	if err := setSchedulePaused(ctx, cl, "straddle", "nope", true, &out); err == nil || !strings.Contains(err.Error(), `schedule "nope" not found`) {
		t.Errorf("missing: %v", err)
	}
}

func TestDeleteScheduleKeepsBackups(t *testing.T) {
	cl := scheduleTestClient(t, testSchedule("nightly", nil), scheduledBackup("nightly", "nightly-1", v1.PhaseCompleted),
		scheduledBackup("nightly", "nightly-2", v1.PhaseInProgress), scheduledBackup("other", "other-1", v1.PhaseCompleted))
	var out bytes.Buffer
	ctx := context.Background()
	if err := deleteSchedule(ctx, cl, "straddle", "nightly", &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `Schedule "nightly" deleted. Its 2 backup(s) are kept`) {
		t.Errorf("output %q", out.String())
	}
	var list v1.BackupList
	if err := cl.List(ctx, &list); err != nil || len(list.Items) != 3 {
		t.Errorf("backups after delete: %d, %v; want all 3", len(list.Items), err)
	}
	if err := deleteSchedule(ctx, cl, "straddle", "nightly", &out); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("second delete: %v", err)
	}
}

func TestDescribeSchedule(t *testing.T) {
	s := testSchedule("nightly", func(s *v1.Schedule) {
		s.UID = "u1"
		s.Spec.Retention = &v1.RetentionPolicy{KeepLast: 3, KeepDaily: 7}
		s.Spec.Template.IncludedNamespaces = []string{"shop"}
		s.Status = v1.ScheduleStatus{LastBackup: "nightly-20261125030000", LastBackupTime: at(-9 * time.Hour), NextRunTime: at(15 * time.Hour),
			SkippedRuns: 2, LastSkippedTime: at(-33 * time.Hour)}
	})
	b1 := scheduledBackup("nightly", "nightly-20261124030000", v1.PhaseCompleted)
	b2 := scheduledBackup("nightly", "nightly-20261125030000", v1.PhaseInProgress)
	ev := corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e1", Namespace: "straddle"}, Reason: "Skipped", Type: corev1.EventTypeWarning,
		Message: "skipped the run", LastTimestamp: *at(-33 * time.Hour),
		InvolvedObject: corev1.ObjectReference{Kind: "Schedule", Name: "nightly", UID: "u1", APIVersion: v1.GroupVersion.String()}}
	other := ev
	other.Name, other.InvolvedObject.Name, other.Reason = "e2", "other", "Created"
	cl := scheduleTestClient(t, s, b1, b2, &ev, &other)
	v, err := loadScheduleView(context.Background(), cl, "straddle", "nightly")
	if err != nil {
		t.Fatal(err)
	}
	text := describeSchedule(v, testNow)
	for _, want := range []string{
		"Schedule:", "0 3 * * * (UTC)", "keep-last 3, keep-daily 7 (and each backup's TTL)", "Namespaces:", "shop",
		"Last backup:", "nightly-20261125030000", "Skipped runs:", "2 (a backup was still running)",
		"Backups (2):", "nightly-20261124030000", "Completed", "InProgress", "Skipped", "skipped the run",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("describe lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "Created") || strings.Index(text, "nightly-20261124") > strings.Index(text, "nightly-20261125030000  ") {
		t.Errorf("describe shows another schedule's event, or backups out of order:\n%s", text)
	}
	paused := testSchedule("held", func(s *v1.Schedule) { s.Spec.Paused = true })
	if text := describeSchedule(scheduleView{schedule: paused}, testNow); !strings.Contains(text, "none: paused") || !strings.Contains(text, "Retention:") ||
		!strings.Contains(text, "none (each backup is kept until its TTL)") || !strings.Contains(text, "none yet") {
		t.Errorf("paused describe:\n%s", text)
	}
}
