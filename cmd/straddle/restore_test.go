package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// pvr builds a PodVolumeRestore of restore r as the controller and node-agent would leave it.
func pvr(r, ns, pod, vol, node string, phase v1.VolumePhase, done, total int64) v1.PodVolumeRestore {
	return v1.PodVolumeRestore{
		ObjectMeta: metav1.ObjectMeta{Name: r + "-" + pod + "-" + vol, Namespace: "straddle", Labels: map[string]string{v1.RestoreLabel: r, v1.NodeLabel: node}},
		Spec: v1.PodVolumeRestoreSpec{Node: node, Pod: v1.PodReference{Namespace: ns, Name: pod, UID: "uid-" + pod}, Volume: vol, StorageLocation: "default",
			SnapshotID: strings.Repeat("ab", 32), SourceNamespace: ns},
		Status: v1.PodVolumeRestoreStatus{Phase: phase, Progress: v1.Progress{BytesDone: done, BytesTotal: total}},
	}
}

func TestDefaultRestoreName(t *testing.T) {
	now := time.Date(2026, 11, 25, 4, 5, 6, 0, time.FixedZone("CET", 3600))
	if got := defaultRestoreName("nightly", now); got != "nightly-20261125030506" {
		t.Errorf("default name = %q, want the backup and the UTC time", got)
	}
	// A backup name of 63 characters leaves no room for the stamp: it is cut, and never ends in '-'.
	long := strings.Repeat("a", 47) + "-" + strings.Repeat("b", 15)
	got := defaultRestoreName(long, now)
	if got != strings.Repeat("a", 47)+"-20261125030506" {
		t.Errorf("default name of a long backup = %q (%d characters)", got, len(got))
	}
	if err := validRestoreName(got); err != nil {
		t.Error(err)
	}
}

func TestParseNamespaceMappings(t *testing.T) {
	m, err := parseNamespaceMappings([]string{"voting:voting-copy", " shop : shop-2 ", ""})
	if err != nil || len(m) != 2 || m["voting"] != "voting-copy" || m["shop"] != "shop-2" {
		t.Errorf("mappings = %v, %v", m, err)
	}
	if m, err := parseNamespaceMappings(nil); err != nil || m != nil {
		t.Errorf("no mappings = %v, %v; want nil", m, err)
	}
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"voting"}, `"voting" is not a src:dst pair`},
		{[]string{"voting:"}, `"voting:" is not a src:dst pair`},
		{[]string{":copy"}, `":copy" is not a src:dst pair`},
		{[]string{"Voting:copy"}, `"Voting" in "Voting:copy" is not a namespace name`},
		{[]string{"voting:copy:2"}, `"copy:2" in "voting:copy:2" is not a namespace name`},
		{[]string{"a:" + strings.Repeat("x", 64)}, "is not a namespace name"},
		{[]string{"a.b:c"}, `"a.b" in "a.b:c" is not a namespace name`},
		{[]string{"a:b", "c:d", "a:e"}, `namespace "a" is mapped twice, to "b" and to "e"`},
	} {
		if _, err := parseNamespaceMappings(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseNamespaceMappings(%q) = %v, want %q", c.in, err, c.want)
		}
	}
}

func TestRestoreSpecFromFlags(t *testing.T) {
	o := &restoreCreateOptions{fromBackup: "nightly", includeNamespaces: []string{"voting", " shop", ""}, excludeNamespaces: []string{"kube-system"},
		mappings: []string{"voting:voting-copy"}}
	spec, err := o.spec()
	if err != nil {
		t.Fatal(err)
	}
	if spec.BackupName != "nightly" || strings.Join(spec.IncludedNamespaces, ",") != "voting,shop" || strings.Join(spec.ExcludedNamespaces, ",") != "kube-system" ||
		len(spec.NamespaceMapping) != 1 || spec.NamespaceMapping["voting"] != "voting-copy" {
		t.Errorf("spec = %+v", spec)
	}
	plain, err := (&restoreCreateOptions{fromBackup: "nightly"}).spec()
	if err != nil || plain.IncludedNamespaces != nil || plain.ExcludedNamespaces != nil || plain.NamespaceMapping != nil {
		t.Errorf("no flags gave %+v, %v; want only the backup", plain, err)
	}
	if _, err := (&restoreCreateOptions{fromBackup: "nightly", includeNamespaces: []string{"*"}, mappings: []string{"a:b"}}).spec(); err != nil {
		t.Errorf("mapping a namespace that * includes: %v", err)
	}
}

// Bad input is refused with one sentence naming the flag, before any cluster is contacted.
func TestRestoreCreateRefusesBadInput(t *testing.T) {
	kc := "/nonexistent/kubeconfig"
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--from-backup is required"},
		{[]string{"--from-backup", "Night_ly"}, `--from-backup: backup name "Night_ly" is not valid`},
		{[]string{"Bad_Name", "--from-backup", "nightly"}, `restore name "Bad_Name" is not valid`},
		{[]string{"--from-backup", "nightly", "--include-namespaces", "a,B_c"}, `--include-namespaces: "B_c" is not a namespace name`},
		{[]string{"--from-backup", "nightly", "--exclude-namespaces", "x y"}, `--exclude-namespaces: "x y" is not a namespace name`},
		{[]string{"--from-backup", "nightly", "--namespace-mappings", "a:b,a:c"}, `namespace "a" is mapped twice`},
		{[]string{"--from-backup", "nightly", "--namespace-mappings", "a=b"}, `"a=b" is not a src:dst pair`},
		{[]string{"--from-backup", "nightly", "--include-namespaces", "shop", "--namespace-mappings", "voting:copy"},
			`maps namespace "voting", which --include-namespaces/--exclude-namespaces leave out`},
		{[]string{"--from-backup", "nightly", "--exclude-namespaces", "voting", "--namespace-mappings", "voting:copy"}, `maps namespace "voting"`},
		{[]string{"a", "b", "--from-backup", "nightly"}, "accepts at most 1 arg"},
	} {
		_, err := straddle(t, append([]string{"restore", "create", "--kubeconfig", kc}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("restore create %v: %v, want %q", c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("restore create %v: error spans lines: %q", c.args, err)
		}
	}
	if _, err := straddle(t, "restore", "get", "-o", "xml", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "want json or yaml") {
		t.Errorf("get -o xml: %v", err)
	}
}

func TestCheckRestorableBackup(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = v1.AddToScheme(scheme)
	backup := func(name string, phase v1.Phase) client.Object {
		return &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle"}, Status: v1.BackupStatus{Phase: phase}}
	}
	cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(backup("done", v1.PhaseCompleted), backup("partly", v1.PhasePartiallyFailed),
		backup("running", v1.PhaseInProgress), backup("new", ""), backup("failed", v1.PhaseFailed), backup("going", v1.PhaseDeleting)).Build()
	ctx := context.Background()
	// A backup this cluster has never seen is read from storage by the controller: no reason to refuse.
	for name, here := range map[string]bool{"done": true, "partly": true, "elsewhere": false} {
		if inCluster, err := checkRestorableBackup(ctx, cl, "straddle", name); err != nil || inCluster != here {
			t.Errorf("backup %s: in cluster %v, %v; want %v and no error", name, inCluster, err, here)
		}
	}
	for name, want := range map[string]string{
		"running": `backup "running" is InProgress, not Completed or PartiallyFailed`,
		"new":     `backup "new" is New, not Completed or PartiallyFailed`,
		"failed":  `backup "failed" is Failed, so there is nothing to restore`,
		"going":   `backup "going" is Deleting`,
	} {
		if _, err := checkRestorableBackup(ctx, cl, "straddle", name); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("backup %s: %v, want %q", name, err, want)
		}
	}
	broken := fake.NewClientBuilder().WithScheme(scheme).WithInterceptorFuncs(interceptor.Funcs{
		Get: func(context.Context, client.WithWatch, client.ObjectKey, client.Object, ...client.GetOption) error {
			return errors.New("connection refused")
		},
	}).Build()
	if _, err := checkRestorableBackup(ctx, broken, "straddle", "done"); err == nil || !strings.Contains(err.Error(), "read backup straddle/done: connection refused") {
		t.Errorf("a failed read: %v", err)
	}
}

func TestRestoreTable(t *testing.T) {
	restores := []v1.Restore{
		{ObjectMeta: metav1.ObjectMeta{Name: "nightly-20261125030506"}, Spec: v1.RestoreSpec{BackupName: "nightly"},
			Status: v1.RestoreStatus{Phase: v1.PhaseCompleted, VolumesTotal: 3, VolumesCompleted: 3, StartTimestamp: at(-2 * time.Hour), CompletionTimestamp: at(-90 * time.Minute)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1.RestoreSpec{BackupName: "weekly-backup"},
			Status: v1.RestoreStatus{Phase: v1.PhaseInProgress, VolumesTotal: 5, VolumesCompleted: 2, VolumesFailed: 1, StartTimestamp: at(-time.Minute)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "new"}, Spec: v1.RestoreSpec{BackupName: "b"}},
	}
	table := restoreTable(restores, testNow)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines:\n%s", len(lines), table)
	}
	for i, fields := range [][]string{
		{"NAME", "BACKUP", "PHASE", "VOLUMES", "STARTED", "COMPLETED"},
		{"nightly-20261125030506", "nightly", "Completed", "3/3", "120m ago", "90m ago"},
		{"r", "weekly-backup", "InProgress", "2/5 (1 failed)", "60s ago", "-"},
		{"new", "b", "New", "0/0", "-", "-"},
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
	for _, col := range []string{"BACKUP", "PHASE", "VOLUMES", "STARTED", "COMPLETED"} {
		columnsAligned(t, table, col)
	}
}

func TestRestoreViewLines(t *testing.T) {
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "r1"}, Spec: v1.RestoreSpec{BackupName: "nightly"},
		Status: v1.RestoreStatus{Phase: v1.PhaseInProgress, VolumesTotal: 2, VolumesCompleted: 1, Progress: v1.Progress{BytesDone: 1536 << 20, BytesTotal: 3 << 30}}}
	pvrs := []v1.PodVolumeRestore{
		pvr("r1", "voting", "db-0", "data", "node-a", v1.VolumePhaseCompleted, 1<<30, 1<<30),
		pvr("r1", "voting", "web-0", "cache", "node-b", v1.VolumePhaseInProgress, 512<<20, 2<<30),
	}
	lines := restoreViewLines(r, pvrs, 75*time.Second, 0)
	want := []string{
		`Restore "r1" from backup "nightly": InProgress, 1/2 volumes done, 0:01:15`,
		"  voting/db-0/data    node-a  Completed   1.0 GiB/1.0 GiB    100%",
		"  voting/web-0/cache  node-b  InProgress  512.0 MiB/2.0 GiB  25%",
		"  total                                   1.5 GiB/3.0 GiB    50%",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("view:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestRestoreLiveViewRedrawsInPlace(t *testing.T) {
	var out bytes.Buffer
	v := &restoreLiveView{live: liveView{w: &out}}
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Spec: v1.RestoreSpec{BackupName: "b"}}
	v.show(r, []v1.PodVolumeRestore{pvr("n", "a", "p", "v", "node", "", 0, 0)}, 0, "")
	if strings.Contains(out.String(), "\033[") {
		t.Errorf("first draw moves the cursor: %q", out.String())
	}
	out.Reset()
	v.show(r, nil, time.Second, "")
	if !strings.HasPrefix(out.String(), "\033[3A\r\033[J") || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("redraw = %q", out.String())
	}

	// A small window: lines cut to its width, the volumes beyond its height summed up, unfinished ones first.
	out.Reset()
	v = &restoreLiveView{live: liveView{w: &out, size: func() (int, int, error) { return 30, 7, nil }}}
	var many []v1.PodVolumeRestore
	for _, pod := range []string{"a", "b", "c", "d", "e"} {
		phase := v1.VolumePhaseCompleted
		if pod == "d" {
			phase = v1.VolumePhaseInProgress
		}
		many = append(many, pvr("n", "ns", pod, "data", "node-with-a-long-name", phase, 1, 2))
	}
	v.show(r, many, 0, "the controller has not started this restore yet")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("drew %d lines, want 6 in a 7-row window:\n%s", len(lines), out.String())
	}
	for _, l := range lines {
		if len([]rune(l)) >= 30 {
			t.Errorf("line %q is not cut to the 30-column window", l)
		}
	}
	if !strings.HasPrefix(lines[1], "  ns/d/data") || lines[3] != "  (3 more volumes)" || !strings.HasPrefix(lines[5], "the controller") {
		t.Errorf("small-window view:\n%s", out.String())
	}
}

func TestRestoreLineViewPrintsPhaseChangesAndThrottlesProgress(t *testing.T) {
	var out bytes.Buffer
	v := &restoreLineView{w: &out, every: 10 * time.Second}
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	v.show(r, nil, 0, "")
	r.Status.Phase, r.Status.VolumesTotal = v1.PhaseInProgress, 2
	running := []v1.PodVolumeRestore{pvr("n", "a", "p", "v", "node-a", v1.VolumePhaseInProgress, 1, 10), pvr("n", "a", "q", "w", "node-b", v1.VolumePhaseInProgress, 1, 10)}
	v.show(r, running, time.Second, "")
	v.show(r, running, 5*time.Second, "") // no change, under 10 s since the last line: silent
	v.show(r, running, 11*time.Second, "")
	running[0].Status.Phase, running[0].Status.Message = v1.VolumePhaseFailed, "snapshot\nnot found"
	running[1].Status.Phase, running[1].Status.Progress = v1.VolumePhaseCompleted, v1.Progress{BytesDone: 10, BytesTotal: 10}
	v.show(r, running, 12*time.Second, "")
	v.show(r, running, 12*time.Second, "") // a volume's end is said once
	r.Status.Phase, r.Status.VolumesCompleted, r.Status.VolumesFailed = v1.PhasePartiallyFailed, 1, 1
	v.show(r, running, 13*time.Second, "")
	want := []string{
		`Restore "n": New, 0/0 volumes done, 0 B`,
		`Restore "n": InProgress, 0/2 volumes done, 0 B`,
		`Restore "n": InProgress, 0/2 volumes done, 0 B`,
		`volume a/p/v on node-a: Failed: snapshot not found`,
		`volume a/q/w on node-b: Completed, 10 B/10 B from snapshot abababab`,
		`Restore "n": PartiallyFailed, 1/2 volumes done, 1 failed, 0 B`,
	}
	if got := strings.TrimSuffix(out.String(), "\n"); got != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
}

func TestRestoreLineViewHintsOnce(t *testing.T) {
	var out bytes.Buffer
	v := &restoreLineView{w: &out, every: 10 * time.Second}
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	w := &restoreWaiter{namespace: "straddle"}
	for _, el := range []time.Duration{0, 29 * time.Second, 31 * time.Second, 45 * time.Second} {
		v.show(r, nil, el, notPickedUpHint("restore", w.namespace, r.Status.Phase, el))
	}
	if n := strings.Count(out.String(), "controller has not started this restore yet: is it running? (kubectl -n straddle get deployment straddle-controller)"); n != 1 {
		t.Errorf("hint printed %d times:\n%s", n, out.String())
	}
	r.Status.Phase = v1.PhaseInProgress
	if h := notPickedUpHint("restore", w.namespace, r.Status.Phase, time.Hour); h != "" {
		t.Errorf("hint for a running restore: %q", h)
	}
}

func TestRestoreOutcome(t *testing.T) {
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: v1.RestoreStatus{Phase: v1.PhaseCompleted}}
	if err := restoreOutcome(r, nil); err != nil {
		t.Errorf("Completed: %v", err)
	}
	failed := pvr("n", "a", "p", "v", "node", v1.VolumePhaseFailed, 0, 0)
	failed.Status.Message = "volume dir of pod a/p not found under /host_pods"
	canceled := pvr("n", "a", "q", "v", "node", v1.VolumePhaseCanceled, 0, 0)
	canceled.Status.Message = "node-agent restarted"
	pvrs := []v1.PodVolumeRestore{pvr("n", "a", "p", "ok", "node", v1.VolumePhaseCompleted, 0, 0), failed, canceled}
	r.Status.Phase = v1.PhasePartiallyFailed
	err := restoreOutcome(r, pvrs)
	if err == nil || !strings.Contains(err.Error(), `restore "n" ended PartiallyFailed: volume a/p/v failed: volume dir of pod a/p not found under /host_pods; volume a/q/v canceled: node-agent restarted`) ||
		strings.Contains(err.Error(), "a/p/ok") {
		t.Errorf("PartiallyFailed: %v", err)
	}
	r.Status.Phase, r.Status.Errors = v1.PhaseFailed, []string{"read backup nightly from storage location default: not found"}
	if err := restoreOutcome(r, nil); err == nil || !strings.Contains(err.Error(), `"n" ended Failed: read backup nightly from storage location default: not found`) {
		t.Errorf("Failed: %v", err)
	}
	r.Status.Errors = nil
	if err := restoreOutcome(r, nil); err == nil || !strings.Contains(err.Error(), "ended Failed (straddle restore describe n --details says more)") {
		t.Errorf("Failed without reasons: %v", err)
	}
}

func testRestore() (*v1.Restore, []v1.PodVolumeRestore) {
	r := &v1.Restore{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly-20261125110000", Namespace: "straddle"},
		Spec: v1.RestoreSpec{BackupName: "nightly", IncludedNamespaces: []string{"voting", "shop"}, ExcludedNamespaces: []string{"kube-system"},
			NamespaceMapping: map[string]string{"voting": "voting-copy", "shop": "shop-2"}},
		Status: v1.RestoreStatus{Phase: v1.PhasePartiallyFailed, VolumesTotal: 2, VolumesCompleted: 1, VolumesFailed: 1,
			Progress:       v1.Progress{BytesDone: 1 << 30, BytesTotal: 2 << 30, FilesDone: 10, FilesTotal: 20},
			StartTimestamp: at(-time.Hour), CompletionTimestamp: at(-time.Minute),
			Resources: []v1.ResourceCount{{Resource: "persistentvolumeclaims", Count: 1}, {Resource: "statefulsets.apps", Count: 1}, {Resource: "services", Count: 2}},
			SkippedResources: []v1.SkippedResource{{Resource: "services", Namespace: "voting-copy", Name: "db", Reason: "already exists"},
				{Resource: "namespaces", Name: "shop-2", Reason: "already\texists"}},
			Errors: []string{"1 volume failed"}, Warnings: []string{"pod voting/db-0 has a volume the backup skipped"}},
	}
	done := pvr(r.Name, "voting-copy", "db-0", "data", "node-a", v1.VolumePhaseCompleted, 1<<30, 1<<30)
	done.Spec.SourceNamespace = "voting"
	done.Spec.SnapshotID = "4f1c2a9be0d7c3aa11223344556677889900aabbccddeeff0011223344556677"
	done.Status.StartTimestamp, done.Status.CompletionTimestamp = at(-50*time.Minute), at(-2*time.Minute)
	failed := pvr(r.Name, "shop-2", "web-0", "cache", "node-b", v1.VolumePhaseFailed, 0, 1<<30)
	failed.Spec.SourceNamespace = "shop"
	failed.Status.Message = "volume dir of pod shop-2/web-0 not found under /host_pods"
	return r, []v1.PodVolumeRestore{done, failed}
}

func TestDescribeRestore(t *testing.T) {
	r, pvrs := testRestore()
	out := describeRestore(r, pvrs, false, testNow)
	for _, want := range []string{
		"Phase:              PartiallyFailed\n",
		"Backup:             nightly\n",
		"Namespaces:         voting, shop; excluding kube-system\n",
		"Namespace mapping:  shop -> shop-2, voting -> voting-copy\n",
		"Started:            2026-11-25 11:00:00 UTC (60m ago)\n",
		"Completed:          2026-11-25 11:59:00 UTC (60s ago)\n",
		"Volumes:            1/2 volumes done, 1 failed\n",
		"Bytes:              1.0 GiB/2.0 GiB 50%\n",
		"Files:              10/20\n",
		"Errors:\n  - 1 volume failed\n",
		"Warnings:\n  - pod voting/db-0 has a volume the backup skipped\n",
		"Resources restored (4 objects):\n  persistentvolumeclaims  1\n  statefulsets.apps       1\n  services                2\n",
		"Skipped resources (2):\n  RESOURCE    NAME            REASON\n  services    voting-copy/db  already exists\n  namespaces  shop-2          already exists\n",
		"Volumes (2):\n  POD               VOLUME  NODE    PHASE      PROGRESS              SNAPSHOT  MESSAGE\n" +
			"  voting-copy/db-0  data    node-a  Completed  1.0 GiB/1.0 GiB 100%  4f1c2a9b  -\n" +
			"  shop-2/web-0      cache   node-b  Failed     0 B/1.0 GiB 0%        abababab  volume dir of pod shop-2/web-0 not found under /host_pods\n",
		"--details shows each volume's times and full snapshot ID",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, pvrs[0].Spec.SnapshotID) {
		t.Errorf("describe without --details shows full snapshot IDs:\n%s", out)
	}

	out = describeRestore(r, pvrs, true, testNow)
	for _, want := range []string{
		"Volume voting-copy/db-0/data:\n",
		"  Snapshot:          " + pvrs[0].Spec.SnapshotID + "\n",
		"  From namespace:    voting (repository repositories/voting in the location)\n",
		"  Started:           2026-11-25 11:10:00 UTC (50m ago)\n",
		"  Completed:         2026-11-25 11:58:00 UTC (2m ago)\n",
		"Volume shop-2/web-0/cache:\n",
		"  Completed:         -\n",
		"  Message:           volume dir of pod shop-2/web-0 not found under /host_pods\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe --details lacks %q:\n%s", want, out)
		}
	}

	empty := describeRestore(&v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Spec: v1.RestoreSpec{BackupName: "b"}}, nil, true, testNow)
	for _, want := range []string{"Phase:              New", "Namespaces:         all\n", "Namespace mapping:  none (namespaces keep their names)", "Volumes (0):\n  none yet"} {
		if !strings.Contains(empty, want) {
			t.Errorf("describe of a new restore lacks %q:\n%s", want, empty)
		}
	}
	if strings.Contains(empty, "Skipped resources") || strings.Contains(empty, "Resources restored") {
		t.Errorf("describe of a new restore shows empty sections:\n%s", empty)
	}
}

func TestRestoreEventsOldestFirst(t *testing.T) {
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "r1", UID: "uid-now"}}
	pvrs := []v1.PodVolumeRestore{pvr("r1", "voting", "db-0", "data", "node-a", "", 0, 0)}
	ev := func(kind, name, reason string, last time.Duration, count int32) corev1.Event {
		return corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: kind, Name: name, APIVersion: v1.GroupVersion.String()},
			Reason: reason, Type: corev1.EventTypeNormal, Message: reason + " happened", LastTimestamp: *at(last), Count: count}
	}
	events := []corev1.Event{
		ev("PodVolumeRestore", pvrs[0].Name, "Completed", -time.Minute, 1),
		ev("Restore", "r1", "Started", -time.Hour, 1),
		ev("Restore", "other", "Started", -2*time.Hour, 1),
		ev("Backup", "r1", "Started", -2*time.Hour, 1),
		ev("Pod", "r1", "Killing", -time.Hour, 1),
		ev("Restore", "r1", "ResourcesRestored", -30*time.Minute, 2),
		ev("Restore", "r1", "OfAnEarlierRestore", -20*time.Minute, 1),
	}
	events[len(events)-1].InvolvedObject.UID = "uid-before"
	rows := restoreEvents(r, pvrs, events)
	var reasons []string
	for _, row := range rows {
		reasons = append(reasons, row.object+":"+row.event.Reason)
	}
	if got := strings.Join(reasons, ","); got != "restore:Started,restore:ResourcesRestored,pvr voting/db-0/data:Completed" {
		t.Errorf("events = %s", got)
	}
	if table := eventTable(rows); !strings.Contains(table, "ResourcesRestored happened (x2)") || !strings.Contains(table, "2026-11-25T11:00:00Z  restore") {
		t.Errorf("event table:\n%s", table)
	}
}

func TestOwnVolumeRestoresDropsThoseOfAnEarlierRestore(t *testing.T) {
	r := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "now"}}
	owned := func(uid types.UID) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Restore", Name: "n", UID: uid}}
	}
	pvrs := []v1.PodVolumeRestore{pvr("n", "a", "p", "new", "x", "", 0, 0), pvr("n", "a", "p", "old", "x", "", 0, 0), pvr("n", "a", "p", "unowned", "x", "", 0, 0)}
	pvrs[0].OwnerReferences, pvrs[1].OwnerReferences = owned("now"), owned("before")
	var got []string
	for _, p := range ownVolumeRestores(r, pvrs) {
		got = append(got, p.Spec.Volume)
	}
	if strings.Join(got, ",") != "new,unowned" {
		t.Errorf("kept %v", got)
	}
}

// The wait rides out failing reads for its grace period, gives up after it, and stops when the restore goes.
func TestRestoreWaiterReads(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = v1.AddToScheme(scheme)
	done := &v1.Restore{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "straddle"}, Status: v1.RestoreStatus{Phase: v1.PhaseCompleted}}
	waiter := func(failures int, objs ...client.Object) *restoreWaiter {
		calls := 0
		cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if calls++; failures < 0 || calls <= failures {
					return errors.New("connection refused")
				}
				return c.Get(ctx, key, obj, opts...)
			},
		}).Build()
		return &restoreWaiter{client: cl, namespace: "straddle", name: "r", clock: clock.RealClock{}, interval: time.Millisecond,
			grace: 200 * time.Millisecond, view: &restoreLineView{w: io.Discard}}
	}
	ctx := context.Background()
	if err := waiter(3, done.DeepCopy()).wait(ctx); err != nil {
		t.Errorf("three failed reads, then Completed: %v", err)
	}
	if err := waiter(-1, done.DeepCopy()).wait(ctx); err == nil || !strings.Contains(err.Error(), `gave up waiting for restore "r" after 200ms of failed reads: read restore straddle/r: connection refused`) {
		t.Errorf("reads that keep failing: %v", err)
	}
	if err := waiter(0).wait(ctx); err == nil || !strings.Contains(err.Error(), "was deleted while waiting") {
		t.Errorf("no restore: %v", err)
	}
	deleting := done.DeepCopy()
	deleting.Status.Phase = v1.PhaseDeleting
	if err := waiter(0, deleting).wait(ctx); err == nil || !strings.Contains(err.Error(), `restore "r" is being deleted`) {
		t.Errorf("a restore being deleted: %v", err)
	}
}
