package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
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

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) *metav1.Time {
	t := metav1.NewTime(testNow.Add(d))
	return &t
}

// pvb builds a PodVolumeBackup of backup b as the controller and node-agent would leave it.
func pvb(b, ns, pod, vol, node string, phase v1.VolumePhase, done, total int64) v1.PodVolumeBackup {
	return v1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{Name: b + "-" + pod + "-" + vol, Namespace: "straddle", Labels: map[string]string{v1.BackupLabel: b}},
		Spec:       v1.PodVolumeBackupSpec{Node: node, Pod: v1.PodReference{Namespace: ns, Name: pod}, Volume: vol, StorageLocation: "default"},
		Status:     v1.PodVolumeBackupStatus{Phase: phase, Progress: v1.Progress{BytesDone: done, BytesTotal: total}},
	}
}

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"72h": 72 * time.Hour, "90m": 90 * time.Minute, "30d": 720 * time.Hour, "1h30m": 90 * time.Minute} {
		got, err := parseTTL(in)
		if err != nil || got != want {
			t.Errorf("parseTTL(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0s", "-1h", "soon", "d", "1.5d", "-3d", "0d", "72"} {
		if _, err := parseTTL(in); err == nil || !strings.Contains(err.Error(), "positive duration") {
			t.Errorf("parseTTL(%q) = %v, want a positive-duration error", in, err)
		}
	}
}

func TestValidBackupName(t *testing.T) {
	for _, ok := range []string{"nightly", "db-2026.11.25", strings.Repeat("a", 63)} {
		if err := validBackupName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Nightly", "my_backup", "-x", "x-", strings.Repeat("a", 64), "a/b"} {
		if err := validBackupName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestCreateSpecFromFlags(t *testing.T) {
	yes := true
	o := &backupSpecFlags{includeNamespaces: []string{"a", " b", ""}, excludeNamespaces: []string{"c"}, selector: "app=web,tier in (db,cache)",
		ttl: "72h", defaultVolumes: &yes, storageLocation: "minio"}
	spec, err := o.spec()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(spec.IncludedNamespaces, ",") != "a,b" || strings.Join(spec.ExcludedNamespaces, ",") != "c" {
		t.Errorf("namespaces: %v / %v", spec.IncludedNamespaces, spec.ExcludedNamespaces)
	}
	if spec.LabelSelector == nil || spec.LabelSelector.MatchLabels["app"] != "web" || len(spec.LabelSelector.MatchExpressions) != 1 {
		t.Errorf("selector: %+v", spec.LabelSelector)
	}
	if spec.TTL == nil || spec.TTL.Duration != 72*time.Hour || spec.DefaultVolumesToFsBackup == nil || !*spec.DefaultVolumesToFsBackup || spec.StorageLocation != "minio" {
		t.Errorf("spec: %+v", spec)
	}
	empty, err := (&backupSpecFlags{}).spec()
	if err != nil || empty.TTL != nil || empty.DefaultVolumesToFsBackup != nil || empty.LabelSelector != nil {
		t.Errorf("no flags gave %+v, %v; want everything left to the defaults", empty, err)
	}
}

// Bad input is refused with one sentence naming the flag, before any cluster is contacted.
func TestCreateRefusesBadInput(t *testing.T) {
	kc := "/nonexistent/kubeconfig"
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"Bad_Name"}, `backup name "Bad_Name" is not valid`},
		{[]string{"ok", "--selector", "app in (web"}, `--selector "app in (web" is not a label selector`},
		{[]string{"ok", "--ttl", "-5h"}, `--ttl "-5h" is not a positive duration`},
		{[]string{"ok", "--include-namespaces", "a,B_c"}, `--include-namespaces: "B_c" is not a namespace name`},
		{[]string{"ok", "--exclude-namespaces", "x y"}, `--exclude-namespaces: "x y" is not a namespace name`},
		{[]string{"ok", "--storage-location", "No!"}, `--storage-location "No!" is not a valid object name`},
	} {
		_, err := straddle(t, append([]string{"backup", "create", "--kubeconfig", kc}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("backup create %v: %v, want %q", c.args, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("backup create %v: error spans lines: %q", c.args, err)
		}
	}
	if _, err := straddle(t, "backup", "get", "-o", "xml", "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "want json or yaml") {
		t.Errorf("get -o xml: %v", err)
	}
}

func TestUnits(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 200 << 20: "200.0 MiB", 3 << 30: "3.0 GiB", -5: "0 B"} {
		if got := bytesOf(n); got != want {
			t.Errorf("bytesOf(%d) = %q, want %q", n, got, want)
		}
	}
	for _, c := range []struct {
		done, total int64
		want        string
	}{{0, 0, "-"}, {0, 10, "0%"}, {999, 1000, "99%"}, {1000, 1000, "100%"}, {1200, 1000, "100%"}} {
		if got := percent(c.done, c.total); got != c.want {
			t.Errorf("percent(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
	if got := progressOf(v1.Progress{BytesDone: 512 << 20, BytesTotal: 2 << 30}); got != "512.0 MiB/2.0 GiB 25%" {
		t.Errorf("progressOf = %q", got)
	}
	if got := progressOf(v1.Progress{BytesDone: 10}); got != "10 B" {
		t.Errorf("progressOf without a total = %q", got)
	}
}

func TestRelativeTimes(t *testing.T) {
	for _, c := range []struct {
		fn   func(*metav1.Time, time.Time) string
		t    *metav1.Time
		want string
	}{
		{until, at(29*24*time.Hour + time.Hour), "29d"},
		{until, at(90 * time.Minute), "90m"},
		{until, at(-time.Second), "expired"},
		{until, nil, "-"},
		{ago, at(-5 * time.Minute), "5m ago"},
		{ago, at(-3 * 24 * time.Hour), "3d ago"},
		{ago, at(time.Minute), "0s ago"},
		{ago, nil, "-"},
	} {
		if got := c.fn(c.t, testNow); got != c.want {
			t.Errorf("got %q, want %q (for %v)", got, c.want, c.t)
		}
	}
	if got := timestamp(at(-2*time.Hour), testNow); got != "2026-11-25 10:00:00 UTC (120m ago)" {
		t.Errorf("timestamp = %q", got)
	}
}

// columnsAligned checks that every line of a tabwriter table starts the column that header starts with
// at the same offset.
func columnsAligned(t *testing.T, table, column string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	off := strings.Index(lines[0], column)
	if off < 0 {
		t.Fatalf("no column %s in %q", column, lines[0])
	}
	for _, l := range lines[1:] {
		if len(l) <= off || l[off-1] != ' ' || l[off] == ' ' {
			t.Errorf("column %s not at offset %d in %q", column, off, l)
		}
	}
}

func TestBackupTable(t *testing.T) {
	backups := []v1.Backup{
		{ObjectMeta: metav1.ObjectMeta{Name: "nightly-long-name"}, Status: v1.BackupStatus{Phase: v1.PhaseCompleted, VolumesTotal: 8, VolumesCompleted: 8,
			Progress: v1.Progress{BytesDone: 3 << 30, BytesTotal: 3 << 30}, StartTimestamp: at(-2 * time.Hour), Expiration: at(29*24*time.Hour + 22*time.Hour)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Status: v1.BackupStatus{Phase: v1.PhaseInProgress, VolumesTotal: 5, VolumesCompleted: 2, VolumesFailed: 1,
			Progress: v1.Progress{BytesDone: 1 << 20, BytesTotal: 4 << 20}, StartTimestamp: at(-time.Minute)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "new"}},
	}
	table := backupTable(backups, testNow)
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("table has %d lines:\n%s", len(lines), table)
	}
	for i, fields := range [][]string{
		{"NAME", "PHASE", "VOLUMES", "BYTES", "STARTED", "EXPIRES"},
		{"nightly-long-name", "Completed", "8/8", "3.0 GiB", "120m ago", "29d"},
		{"b", "InProgress", "2/5 (1 failed)", "1.0 MiB/4.0 MiB", "60s ago", "-"},
		{"new", "New", "0/0", "0 B", "-", "-"},
	} {
		cells := strings.Split(lines[i], "  ")
		var got []string
		for _, c := range cells {
			if c = strings.TrimSpace(c); c != "" {
				got = append(got, c)
			}
		}
		if strings.Join(got, "|") != strings.Join(fields, "|") {
			t.Errorf("line %d = %q, want cells %q", i, lines[i], fields)
		}
	}
	for _, col := range []string{"PHASE", "VOLUMES", "BYTES", "STARTED", "EXPIRES"} {
		columnsAligned(t, table, col)
	}
}

func TestProgressViewLines(t *testing.T) {
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "nightly"}, Status: v1.BackupStatus{Phase: v1.PhaseInProgress, VolumesTotal: 2, VolumesCompleted: 1,
		Progress: v1.Progress{BytesDone: 1536 << 20, BytesTotal: 3 << 30}}}
	pvbs := []v1.PodVolumeBackup{
		pvb("nightly", "shop", "db-0", "data", "node-a", v1.VolumePhaseCompleted, 1<<30, 1<<30),
		pvb("nightly", "shop", "web-0", "cache", "node-b", v1.VolumePhaseInProgress, 512<<20, 2<<30),
	}
	lines := progressViewLines(b, pvbs, 75*time.Second, 0)
	want := []string{
		`Backup "nightly": InProgress, 1/2 volumes done, 0:01:15`,
		"  shop/db-0/data    node-a  Completed   1.0 GiB/1.0 GiB    100%",
		"  shop/web-0/cache  node-b  InProgress  512.0 MiB/2.0 GiB  25%",
		"  total                                 1.5 GiB/3.0 GiB    50%",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("view:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}

func TestLiveViewRedrawsInPlace(t *testing.T) {
	var out bytes.Buffer
	v := &liveView{w: &out}
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	pvbs := []v1.PodVolumeBackup{pvb("n", "a", "p", "v", "node", "", 0, 0)}
	v.show(b, pvbs, 0, "")
	if strings.Contains(out.String(), "\033[") {
		t.Errorf("first draw moves the cursor: %q", out.String())
	}
	out.Reset()
	v.show(b, nil, time.Second, "")
	// Up over the three lines drawn before (header, volume, total), and clear what was below.
	if !strings.HasPrefix(out.String(), "\033[3A\r\033[J") || strings.Count(out.String(), "\n") != 2 {
		t.Errorf("redraw = %q", out.String())
	}

	// A small window: lines are cut to its width, volumes beyond its height summed up, the hint counted.
	out.Reset()
	v = &liveView{w: &out, size: func() (int, int, error) { return 30, 7, nil }}
	b.Status.VolumesTotal = 5
	var many []v1.PodVolumeBackup
	for _, pod := range []string{"a", "b", "c", "d", "e"} {
		phase := v1.VolumePhaseCompleted
		if pod == "d" {
			phase = v1.VolumePhaseInProgress
		}
		many = append(many, pvb("n", "ns", pod, "data", "node-with-a-long-name", phase, 1, 2))
	}
	v.show(b, many, 0, "the controller has not started this backup yet")
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 6 || v.drawn != 6 {
		t.Fatalf("drew %d lines (counted %d), want 6 in a 7-row window:\n%s", len(lines), v.drawn, out.String())
	}
	for _, l := range lines {
		if len([]rune(l)) >= 30 {
			t.Errorf("line %q is not cut to the 30-column window", l)
		}
	}
	if !strings.HasPrefix(lines[1], "  ns/d/data") || !strings.HasPrefix(lines[2], "  ns/a/data") || lines[3] != "  (3 more volumes)" ||
		!strings.HasPrefix(lines[4], "  total") || !strings.HasPrefix(lines[5], "the controller") {
		t.Errorf("small-window view puts the unfinished volume first and sums up the rest:\n%s", out.String())
	}
}

func TestLineViewPrintsPhaseChangesAndThrottlesProgress(t *testing.T) {
	var out bytes.Buffer
	v := &lineView{w: &out, every: 10 * time.Second}
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	v.show(b, nil, 0, "")
	b.Status.Phase, b.Status.VolumesTotal = v1.PhaseInProgress, 2
	running := []v1.PodVolumeBackup{pvb("n", "a", "p", "v", "node-a", v1.VolumePhaseInProgress, 1, 10), pvb("n", "a", "q", "w", "node-b", v1.VolumePhaseInProgress, 1, 10)}
	v.show(b, running, time.Second, "")
	v.show(b, running, 5*time.Second, "") // no change, under 10 s since the last line: silent
	v.show(b, running, 11*time.Second, "")
	running[0].Status.Phase, running[0].Status.Message = v1.VolumePhaseFailed, "volume dir\nnot found"
	v.show(b, running, 12*time.Second, "")
	b.Status.Phase = v1.PhasePartiallyFailed
	v.show(b, running, 13*time.Second, "")
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := []string{
		`Backup "n": New, 0/0 volumes done, 0 B`,
		`Backup "n": InProgress, 0/2 volumes done, 0 B`,
		`Backup "n": InProgress, 0/2 volumes done, 0 B`,
		`volume a/p/v on node-a: Failed: volume dir not found`,
		`Backup "n": PartiallyFailed, 0/2 volumes done, 0 B`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

func TestBackupOutcome(t *testing.T) {
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "n"}, Status: v1.BackupStatus{Phase: v1.PhaseCompleted}}
	if err := backupOutcome(b, nil); err != nil {
		t.Errorf("Completed: %v", err)
	}
	failed := pvb("n", "a", "p", "v", "node", v1.VolumePhaseFailed, 0, 0)
	failed.Status.Message = "permission denied reading /host_pods/uid/volumes"
	pvbs := []v1.PodVolumeBackup{pvb("n", "a", "p", "ok", "node", v1.VolumePhaseCompleted, 0, 0), failed}
	b.Status.Phase = v1.PhasePartiallyFailed
	err := backupOutcome(b, pvbs)
	if err == nil || !strings.Contains(err.Error(), "PartiallyFailed") || !strings.Contains(err.Error(), "a/p/v failed: permission denied") || strings.Contains(err.Error(), "a/p/ok") {
		t.Errorf("PartiallyFailed: %v", err)
	}
	b.Status.Phase, b.Status.Errors = v1.PhaseFailed, []string{"storage location default is Unavailable"}
	if err := backupOutcome(b, nil); err == nil || !strings.Contains(err.Error(), `"n" ended Failed: storage location default is Unavailable`) {
		t.Errorf("Failed: %v", err)
	}
}

func testBackupView() backupView {
	b := &v1.Backup{
		ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: "straddle"},
		Spec: v1.BackupSpec{IncludedNamespaces: []string{"shop", "blog"}, ExcludedNamespaces: []string{"kube-system"},
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TTL: &metav1.Duration{Duration: 72 * time.Hour}},
		Status: v1.BackupStatus{Phase: v1.PhasePartiallyFailed, VolumesTotal: 2, VolumesCompleted: 1, VolumesFailed: 1,
			Progress:       v1.Progress{BytesDone: 1 << 30, BytesTotal: 2 << 30},
			StartTimestamp: at(-time.Hour), CompletionTimestamp: at(-time.Minute), Expiration: at(71 * time.Hour),
			SkippedVolumes: []v1.SkippedVolume{{Namespace: "shop", Pod: "web-0", Volume: "token", Reason: "secret volumes are never backed up"},
				{Namespace: "shop", Pod: "batch-1", Reason: "pod is Pending, not Running"}},
			Resources: []v1.ResourceCount{{Resource: "pods", Count: 3}, {Resource: "deployments.apps", Count: 2}},
			Errors:    []string{"1 volume failed"}, Warnings: []string{"pod shop/web-0 has no volume \"logs\" named in its annotation"}},
	}
	done := pvb("nightly", "shop", "db-0", "data", "node-a", v1.VolumePhaseCompleted, 1<<30, 1<<30)
	done.Spec.PVC = "data-db-0"
	done.Status.SnapshotID = "4f1c2a9be0d7c3aa11223344556677889900aabbccddeeff0011223344556677"
	done.Status.Stats = v1.VolumeStats{FilesNew: 10, FilesChanged: 2, FilesUnmodified: 300, BytesRead: 1 << 30, BytesAdded: 100 << 20, BytesStored: 60 << 20}
	done.Status.Warnings = []string{"could not read lost+found: permission denied"}
	failed := pvb("nightly", "shop", "web-0", "cache", "node-b", v1.VolumePhaseFailed, 0, 1<<30)
	failed.Status.Message = "volume dir not found under /host_pods"
	loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "straddle"},
		Spec: v1.BackupStorageLocationSpec{Provider: "s3", Default: true,
			RepositoryPasswordSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "straddle-repository-password"}},
			S3: &v1.S3Location{Endpoint: "http://minio.internal:9000", Bucket: "backups", Prefix: "cluster-a", ForcePathStyle: true,
				CredentialsSecret: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "straddle-storage-credentials"}, Key: "cloud"}}}}
	return backupView{backup: b, pvbs: []v1.PodVolumeBackup{done, failed}, location: loc}
}

func TestDescribeBackup(t *testing.T) {
	v := testBackupView()
	out := describeBackup(v, false, testNow)
	for _, want := range []string{
		"Phase:                         PartiallyFailed",
		"Storage location:              default (s3 http://minio.internal:9000, bucket backups, prefix cluster-a)",
		"Namespaces:                    shop, blog; excluding kube-system",
		"Selector:                      app=web",
		"Default volumes to fs backup:  the install's default",
		"TTL:                           72h0m0s",
		"Expires:                       2026-11-28 11:00:00 UTC (in 2d23h)",
		"Volumes:                       1/2 volumes done, 1 failed, 2 skipped",
		"Bytes:                         1.0 GiB/2.0 GiB 50%",
		"Errors:\n  - 1 volume failed",
		"Warnings:\n  - pod shop/web-0 has no volume \"logs\"",
		"  POD         VOLUME  NODE    PHASE      PROGRESS              SNAPSHOT  MESSAGE",
		"  shop/db-0   data    node-a  Completed  1.0 GiB/1.0 GiB 100%  4f1c2a9b  -",
		"  shop/web-0  cache   node-b  Failed     0 B/1.0 GiB 0%        -         volume dir not found under /host_pods",
		"  POD           VOLUME  REASON\n  shop/web-0    token   secret volumes are never backed up\n  shop/batch-1  (all)   pod is Pending, not Running",
		"Resources (5 objects):\n  pods              3\n  deployments.apps  2",
		"--details shows",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, v.pvbs[0].Status.SnapshotID) || strings.Contains(out, "repo restore") {
		t.Errorf("describe without --details shows details:\n%s", out)
	}
	if strings.Contains(out, "Synced from") {
		t.Errorf("describe calls a backup of this cluster synced:\n%s", out)
	}
	synced := testBackupView()
	synced.backup.Annotations = map[string]string{v1.SyncedFromAnnotation: "default"}
	if out := describeBackup(synced, false, testNow); !strings.Contains(out, "Origin:                        Synced from storage location default\n") {
		t.Errorf("describe of a synced backup lacks its origin:\n%s", out)
	}

	out = describeBackup(v, true, testNow)
	for _, want := range []string{
		"Volume shop/db-0/data:",
		"  PVC:              data-db-0",
		"  Snapshot:         " + v.pvbs[0].Status.SnapshotID,
		"  Files:            10 new, 2 changed, 300 unmodified",
		"  Bytes:            1.0 GiB read, 100.0 MiB added, 60.0 MiB stored",
		"  warning: could not read lost+found: permission denied",
		"Volume shop/web-0/cache:",
		"  Message:          volume dir not found under /host_pods",
		"Restore without the cluster:\n  kubectl -n straddle get secret straddle-repository-password -o jsonpath='{.data.password}' | base64 -d > repository-password\n" +
			"  export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...   # from Secret straddle/straddle-storage-credentials, key cloud\n" +
			"  straddle repo restore " + v.pvbs[0].Status.SnapshotID + " --repo s3+http://minio.internal:9000/backups/cluster-a/repositories/shop --s3-bucket-lookup path --password-file repository-password --target restore/shop/db-0/data\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe --details lacks %q:\n%s", want, out)
		}
	}
}

func TestRepositoryFlags(t *testing.T) {
	for _, c := range []struct {
		spec v1.BackupStorageLocationSpec
		want string
	}{
		{v1.BackupStorageLocationSpec{Provider: "s3", S3: &v1.S3Location{Endpoint: "https://s3.example.com", Bucket: "bkt", Region: "eu-west-1"}},
			"--repo s3://s3.example.com/bkt/repositories/ns --region eu-west-1"},
		{v1.BackupStorageLocationSpec{Provider: "s3", S3: &v1.S3Location{Endpoint: "http://10.0.0.1:9000/", Bucket: "bkt", Prefix: "/a/b/", ForcePathStyle: true}},
			"--repo s3+http://10.0.0.1:9000/bkt/a/b/repositories/ns --s3-bucket-lookup path"},
		{v1.BackupStorageLocationSpec{Provider: "filesystem", Filesystem: &v1.FilesystemLocation{Path: "/mnt/backups"}},
			"--repo /mnt/backups/repositories/ns"},
	} {
		loc := &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "l"}, Spec: c.spec}
		if got := repositoryFlags(loc, "ns"); got != c.want {
			t.Errorf("repositoryFlags = %q, want %q", got, c.want)
		}
	}
}

func TestBackupEventsOldestFirst(t *testing.T) {
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "nightly"}}
	pvbs := []v1.PodVolumeBackup{pvb("nightly", "shop", "db-0", "data", "node-a", "", 0, 0)}
	ev := func(kind, name, reason string, last time.Duration, count int32) corev1.Event {
		return corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: kind, Name: name, APIVersion: v1.GroupVersion.String()},
			Reason: reason, Type: corev1.EventTypeNormal, Message: reason + " happened", LastTimestamp: *at(last), Count: count}
	}
	events := []corev1.Event{
		ev("PodVolumeBackup", pvbs[0].Name, "Completed", -time.Minute, 1),
		ev("Backup", "nightly", "Started", -time.Hour, 1),
		ev("Backup", "other", "Started", -2*time.Hour, 1),
		ev("Pod", "nightly", "Killing", -time.Hour, 1),
		ev("Backup", "nightly", "Progress", -30*time.Minute, 4),
		ev("Backup", "nightly", "OfAnEarlierBackup", -20*time.Minute, 1),
	}
	b.UID, events[len(events)-1].InvolvedObject.UID = "uid-now", "uid-before"
	rows := backupEvents(b, pvbs, events)
	var reasons []string
	for _, r := range rows {
		reasons = append(reasons, r.object+":"+r.event.Reason)
	}
	if got := strings.Join(reasons, ","); got != "backup:Started,backup:Progress,pvb shop/db-0/data:Completed" {
		t.Errorf("events = %s", got)
	}
	table := eventTable(rows)
	for _, want := range []string{"TIME", "2026-11-25T11:00:00Z  backup", "Progress happened (x4)", "pvb shop/db-0/data  Normal  Completed"} {
		if !strings.Contains(table, want) {
			t.Errorf("event table lacks %q:\n%s", want, table)
		}
	}
	columnsAligned(t, table, "REASON")
}

func TestAskYes(t *testing.T) {
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false, "yep\n": false} {
		var out bytes.Buffer
		if got := askYes(strings.NewReader(in), &out, "Delete?"); got != want || out.String() != "Delete? [y/N] " {
			t.Errorf("askYes(%q) = %v (prompt %q), want %v", in, got, out.String(), want)
		}
	}
}

func TestDeletionPlanSaysWhatGoes(t *testing.T) {
	v := testBackupView()
	plan := deletionPlan(v.backup, v.pvbs)
	for _, want := range []string{`"nightly"`, "1 volume snapshot(s)", "backups/nightly/", "the default storage location"} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan %q lacks %q", plan, want)
		}
	}
}

// /dev/null is a character device but no terminal: a command run with </dev/null (cron, CI) must neither
// prompt nor draw.
func TestDevNullIsNoTerminal(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("isTerminal(/dev/null) = true")
	}
}

func TestLineViewHintsOnce(t *testing.T) {
	var out bytes.Buffer
	v := &lineView{w: &out, every: 10 * time.Second}
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
	w := &backupWaiter{namespace: "straddle"}
	for _, el := range []time.Duration{0, 29 * time.Second, 31 * time.Second, 45 * time.Second} {
		v.show(b, nil, el, notPickedUpHint("backup", w.namespace, b.Status.Phase, el))
	}
	if n := strings.Count(out.String(), "controller has not started this backup yet: is it running? (kubectl -n straddle get deployment straddle-controller)"); n != 1 {
		t.Errorf("hint printed %d times:\n%s", n, out.String())
	}
	b.Status.Phase = v1.PhaseInProgress
	if h := notPickedUpHint("backup", w.namespace, b.Status.Phase, time.Hour); h != "" {
		t.Errorf("hint for a running backup: %q", h)
	}
}

func TestOwnVolumeBackupsDropsThoseOfAnEarlierBackup(t *testing.T) {
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "n", UID: "now"}}
	owned := func(uid types.UID) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Backup", Name: "n", UID: uid}}
	}
	pvbs := []v1.PodVolumeBackup{pvb("n", "a", "p", "new", "x", "", 0, 0), pvb("n", "a", "p", "old", "x", "", 0, 0), pvb("n", "a", "p", "unowned", "x", "", 0, 0)}
	pvbs[0].OwnerReferences, pvbs[1].OwnerReferences = owned("now"), owned("before")
	var got []string
	for _, p := range ownVolumeBackups(b, pvbs) {
		got = append(got, p.Spec.Volume)
	}
	if strings.Join(got, ",") != "new,unowned" {
		t.Errorf("kept %v", got)
	}
}

// The wait rides out failing reads for its grace period, gives up after it, and stops when the backup goes.
func TestBackupWaiterReads(t *testing.T) {
	scheme := runtime.NewScheme()
	_ = v1.AddToScheme(scheme)
	done := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "straddle"}, Status: v1.BackupStatus{Phase: v1.PhaseCompleted}}
	waiter := func(failures int, objs ...client.Object) *backupWaiter {
		calls := 0
		cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if calls++; failures < 0 || calls <= failures {
					return errors.New("connection refused")
				}
				return c.Get(ctx, key, obj, opts...)
			},
		}).Build()
		return &backupWaiter{client: cl, namespace: "straddle", name: "b", clock: clock.RealClock{}, interval: time.Millisecond,
			grace: 200 * time.Millisecond, view: &lineView{w: io.Discard}}
	}
	ctx := context.Background()
	if err := waiter(3, done.DeepCopy()).wait(ctx); err != nil {
		t.Errorf("three failed reads, then Completed: %v", err)
	}
	if err := waiter(-1, done.DeepCopy()).wait(ctx); err == nil || !strings.Contains(err.Error(), "gave up waiting for backup \"b\" after 200ms of failed reads: read backup straddle/b: connection refused") {
		t.Errorf("reads that keep failing: %v", err)
	}
	if err := waiter(0).wait(ctx); err == nil || !strings.Contains(err.Error(), "was deleted while waiting") {
		t.Errorf("no backup: %v", err)
	}
}

// --default-volumes-to-fs-backup is three-valued: absent leaves the install's default, bare means true.
func TestDefaultVolumesFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{{nil, "<nil>"}, {[]string{"--default-volumes-to-fs-backup"}, "true"}, {[]string{"--default-volumes-to-fs-backup=false"}, "false"}} {
		var o backupSpecFlags
		fl := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.register(fl)
		if err := fl.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		got := "<nil>"
		if o.defaultVolumes != nil {
			got = strconv.FormatBool(*o.defaultVolumes)
		}
		if got != c.want {
			t.Errorf("%v: %s, want %s", c.args, got, c.want)
		}
	}
	fl := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	(&backupSpecFlags{}).register(fl)
	if err := fl.Parse([]string{"--default-volumes-to-fs-backup=maybe"}); err == nil {
		t.Error("--default-volumes-to-fs-backup=maybe accepted")
	}
}

func TestDescribeBackupHooks(t *testing.T) {
	one := 1
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: "b1"}, Status: v1.BackupStatus{Phase: v1.PhaseCompleted, Hooks: []v1.HookResult{
		{Namespace: "app", Pod: "db", Phase: v1.HookPhasePre, Container: "main", Command: []string{"sh", "-c", "flush"}, State: v1.HookFailed,
			ExitCode: &one, Duration: &metav1.Duration{Duration: 1500 * time.Millisecond}, Error: "exited with code 1", Stderr: "no database\n"},
		{Namespace: "app", Pod: "db", Phase: v1.HookPhasePost, Container: "main", Command: []string{"thaw"}, State: v1.HookRunning},
	}}}
	out := describeBackup(backupView{backup: b}, false, testNow)
	for _, want := range []string{"Hooks (2):", "app/db  pre 0", "sh -c flush", "Failed", "1.5s", "exited with code 1", "app/db pre 0 stderr:\n    no database", "post 0", "Running"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
}
