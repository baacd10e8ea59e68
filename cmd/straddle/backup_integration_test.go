//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// syncBuffer is an output buffer a command writes while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startStraddle runs the CLI in the background; the returned channel yields its error when it ends.
func startStraddle(ctx context.Context, out *syncBuffer, args ...string) <-chan error {
	cmd := newRootCmd()
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs(args)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	return done
}

// backupTestEnv is an API server with Straddle's CRDs, the install namespace and a default location: what
// `straddle install` leaves, without the controller, whose part each test plays.
type backupTestEnv struct {
	kc       string
	cl       client.Client
	locDir   string
	ctx      context.Context
	straddle func(args ...string) (string, error)
}

func TestBackupCommands(t *testing.T) {
	kc, cl := controlPlane(t)
	ctx := context.Background()
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "straddle"}}); err != nil {
		t.Fatal(err)
	}
	locDir := t.TempDir()
	if err := cl.Create(ctx, &v1.BackupStorageLocation{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "straddle"},
		Spec: v1.BackupStorageLocationSpec{Provider: "filesystem", Default: true, Filesystem: &v1.FilesystemLocation{Path: locDir}}}); err != nil {
		t.Fatal(err)
	}
	e := &backupTestEnv{kc: kc, cl: cl, locDir: locDir, ctx: ctx}
	e.straddle = func(args ...string) (string, error) {
		return straddle(t, append(args, "--kubeconfig", kc)...)
	}
	t.Run("create", e.testCreate)
	t.Run("wait", e.testWait)
	t.Run("wait stops on Ctrl-C", e.testWaitInterrupted)
	t.Run("get and describe", e.testGetDescribe)
	t.Run("logs", e.testLogs)
	t.Run("delete", e.testDelete)
}

func (e *backupTestEnv) backup(t *testing.T, name string) *v1.Backup {
	t.Helper()
	var b v1.Backup
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: "straddle", Name: name}, &b); err != nil {
		t.Fatalf("get backup %s: %v", name, err)
	}
	return &b
}

func (e *backupTestEnv) testCreate(t *testing.T) {
	out, err := e.straddle("backup", "create", "nightly", "--include-namespaces", "shop,blog", "--exclude-namespaces", "kube-system",
		"--selector", "app=web", "--ttl", "72h", "--storage-location", "default", "--default-volumes-to-fs-backup")
	if err != nil {
		t.Fatal(err)
	}
	if out != "Backup \"nightly\" created. See: straddle backup describe nightly\n" {
		t.Errorf("create printed %q", out)
	}
	spec := e.backup(t, "nightly").Spec
	if strings.Join(spec.IncludedNamespaces, ",") != "shop,blog" || strings.Join(spec.ExcludedNamespaces, ",") != "kube-system" ||
		spec.LabelSelector == nil || spec.LabelSelector.MatchLabels["app"] != "web" || spec.TTL == nil || spec.TTL.Duration != 72*time.Hour ||
		spec.StorageLocation != "default" || spec.DefaultVolumesToFsBackup == nil || !*spec.DefaultVolumesToFsBackup {
		t.Errorf("spec = %+v", spec)
	}

	// Without the flag the install's default rules, so the field stays unset; the API server fills the TTL.
	if _, err := e.straddle("backup", "create", "plain"); err != nil {
		t.Fatal(err)
	}
	plain := e.backup(t, "plain").Spec
	if plain.DefaultVolumesToFsBackup != nil || plain.TTL == nil || plain.TTL.Duration != 720*time.Hour || plain.StorageLocation != "" {
		t.Errorf("plain spec = %+v", plain)
	}
	if _, err := e.straddle("backup", "create", "annotated-only", "--default-volumes-to-fs-backup=false"); err != nil {
		t.Fatal(err)
	}
	if v := e.backup(t, "annotated-only").Spec.DefaultVolumesToFsBackup; v == nil || *v {
		t.Errorf("--default-volumes-to-fs-backup=false set %v", v)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nightly"}, `backup "nightly" already exists in namespace straddle`},
		{[]string{"elsewhere", "--storage-location", "nowhere"}, `storage location "nowhere" not found in namespace straddle`},
		{[]string{"lost", "-n", "not-installed"}, "namespace not-installed not found; is Straddle installed there (straddle install -n not-installed)?"},
	} {
		if _, err := e.straddle(append([]string{"backup", "create"}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %v: %v, want %q", c.args, err, c.want)
		}
	}
}

// newPVB creates a PodVolumeBackup of a backup as the controller would, with the status a node-agent would
// write.
func (e *backupTestEnv) newPVB(t *testing.T, backup, ns, pod, volume, node string, status v1.PodVolumeBackupStatus) *v1.PodVolumeBackup {
	t.Helper()
	p := &v1.PodVolumeBackup{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%s-%s", backup, pod, volume), Namespace: "straddle",
			Labels: map[string]string{v1.BackupLabel: backup, v1.NodeLabel: node}},
		Spec: v1.PodVolumeBackupSpec{Node: node, Pod: v1.PodReference{Namespace: ns, Name: pod, UID: "uid-" + pod}, Volume: volume, StorageLocation: "default"},
	}
	if err := e.cl.Create(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	p.Status = status
	if err := e.cl.Status().Update(e.ctx, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// setStatus writes a Backup's status as the controller would.
func (e *backupTestEnv) setStatus(t *testing.T, name string, mutate func(*v1.BackupStatus)) {
	t.Helper()
	b := e.backup(t, name)
	mutate(&b.Status)
	if err := e.cl.Status().Update(e.ctx, b); err != nil {
		t.Fatal(err)
	}
}

func (e *backupTestEnv) waitCreated(t *testing.T, name string, done <-chan error) {
	t.Helper()
	waitFor(t, "backup "+name+" to be created", func() bool {
		select {
		case err := <-done:
			t.Fatalf("create --wait ended before the backup was there: %v", err)
		default:
		}
		return e.cl.Get(e.ctx, client.ObjectKey{Namespace: "straddle", Name: name}, &v1.Backup{}) == nil
	})
}

func (e *backupTestEnv) testWait(t *testing.T) {
	for _, c := range []struct {
		phase  v1.Phase
		failed bool
		want   string // in the error; empty for success
	}{
		{v1.PhaseCompleted, false, ""},
		{v1.PhasePartiallyFailed, true, `ended PartiallyFailed: volume shop/db-0/data failed: permission denied reading /host_pods/uid-db-0/volumes`},
		{v1.PhaseFailed, true, `ended Failed: volume shop/db-0/data failed: permission denied reading /host_pods/uid-db-0/volumes`},
	} {
		t.Run(string(c.phase), func(t *testing.T) {
			name := "wait-" + strings.ToLower(string(c.phase))
			var out syncBuffer
			done := startStraddle(e.ctx, &out, "backup", "create", name, "--wait", "--kubeconfig", e.kc)
			e.waitCreated(t, name, done)

			now := metav1.Now()
			e.setStatus(t, name, func(s *v1.BackupStatus) {
				s.Phase, s.StartTimestamp, s.VolumesTotal = v1.PhaseInProgress, &now, 2
				s.Progress = v1.Progress{BytesDone: 1 << 20, BytesTotal: 4 << 20}
			})
			waitFor(t, "the InProgress line", func() bool { return strings.Contains(out.String(), "InProgress") })

			dbStatus := v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseCompleted, SnapshotID: "0123456789abcdef", Progress: v1.Progress{BytesDone: 1 << 20, BytesTotal: 1 << 20}}
			if c.failed {
				dbStatus = v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseFailed, Message: "permission denied reading /host_pods/uid-db-0/volumes"}
			}
			e.newPVB(t, name, "shop", "db-0", "data", "node-a", dbStatus)
			webPhase := v1.VolumePhaseCompleted
			if c.phase == v1.PhaseFailed {
				webPhase = v1.VolumePhaseFailed
			}
			e.newPVB(t, name, "shop", "web-0", "cache", "node-b", v1.PodVolumeBackupStatus{Phase: webPhase, SnapshotID: "fedcba9876543210"})
			select {
			case err := <-done:
				t.Fatalf("create --wait ended while InProgress: %v", err)
			case <-time.After(1500 * time.Millisecond):
			}
			e.setStatus(t, name, func(s *v1.BackupStatus) {
				s.Phase, s.CompletionTimestamp = c.phase, &now
				s.VolumesCompleted = 2
				if c.failed {
					s.VolumesCompleted, s.VolumesFailed = 1, 1
				}
			})
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("create --wait did not end after the backup turned %s; output:\n%s", c.phase, out.String())
			}
			switch {
			case c.want == "" && err != nil:
				t.Errorf("create --wait of a Completed backup: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("create --wait of a %s backup: %v, want %q", c.phase, err, c.want)
			}
			if strings.Contains(err2str(err), "web-0") && c.phase == v1.PhasePartiallyFailed {
				t.Errorf("error names a volume that did not fail: %v", err)
			}
			for _, want := range []string{`Backup "` + name + `" created.`, `Backup "` + name + `": InProgress, 0/2 volumes done`, `Backup "` + name + `": ` + string(c.phase)} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			if c.failed && !strings.Contains(out.String(), "volume shop/db-0/data on node-a: Failed: permission denied") {
				t.Errorf("output does not say the volume failed:\n%s", out.String())
			}
		})
	}
}

func err2str(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (e *backupTestEnv) testWaitInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var out syncBuffer
	done := startStraddle(ctx, &out, "backup", "create", "interrupted", "--wait", "--kubeconfig", e.kc)
	e.waitCreated(t, "interrupted", done)
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `stopped waiting; backup "interrupted" goes on`) {
			t.Errorf("interrupted wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("create --wait did not stop when its context was cancelled")
	}
	e.backup(t, "interrupted") // still there
}

func (e *backupTestEnv) testGetDescribe(t *testing.T) {
	if _, err := e.straddle("backup", "create", "described", "--include-namespaces", "shop"); err != nil {
		t.Fatal(err)
	}
	start, end := metav1.NewTime(time.Now().Add(-time.Hour)), metav1.NewTime(time.Now().Add(-time.Minute))
	exp := metav1.NewTime(time.Now().Add(29*24*time.Hour + time.Hour))
	e.setStatus(t, "described", func(s *v1.BackupStatus) {
		s.Phase, s.StartTimestamp, s.CompletionTimestamp, s.Expiration = v1.PhasePartiallyFailed, &start, &end, &exp
		s.VolumesTotal, s.VolumesCompleted, s.VolumesFailed = 2, 1, 1
		s.Progress = v1.Progress{BytesDone: 3 << 30, BytesTotal: 4 << 30}
		s.SkippedVolumes = []v1.SkippedVolume{{Namespace: "shop", Pod: "web-0", Volume: "token", Reason: "secret volumes are never backed up"}}
		s.Resources = []v1.ResourceCount{{Resource: "pods", Count: 2}, {Resource: "deployments.apps", Count: 1}}
		s.Warnings = []string{`pod shop/web-0 names volume "logs", which it does not have`}
	})
	e.newPVB(t, "described", "shop", "db-0", "data", "node-a", v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseCompleted,
		SnapshotID: "aabbccdd11223344556677889900aabbccddeeff00112233445566778899aabb", Progress: v1.Progress{BytesDone: 3 << 30, BytesTotal: 3 << 30},
		Stats: v1.VolumeStats{FilesNew: 7, FilesChanged: 1, FilesUnmodified: 42, BytesRead: 3 << 30, BytesAdded: 2 << 30, BytesStored: 1 << 30}})
	e.newPVB(t, "described", "shop", "web-0", "cache", "node-b", v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseFailed,
		Message: "volume dir not found under /host_pods", Progress: v1.Progress{BytesTotal: 1 << 30}})
	// Another backup's volume must not show up.
	e.newPVB(t, "other", "shop", "db-0", "data", "node-a", v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseCompleted})

	out, err := e.straddle("backup", "get")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "NAME ") {
		t.Errorf("get has no header:\n%s", out)
	}
	var line string
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "described ") {
			line = strings.Join(strings.Fields(l), " ")
		}
	}
	if line != "described PartiallyFailed 1/2 (1 failed) 3.0 GiB 60m ago 29d" {
		t.Errorf("get row = %q:\n%s", line, out)
	}
	for _, name := range []string{"nightly", "plain", "wait-completed"} {
		if !strings.Contains(out, "\n"+name+" ") {
			t.Errorf("get lacks backup %s:\n%s", name, out)
		}
	}
	out, err = e.straddle("backup", "get", "described", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var b v1.Backup
	if err := json.Unmarshal([]byte(out), &b); err != nil || b.Kind != "Backup" || b.Status.VolumesFailed != 1 {
		t.Errorf("get -o json: %v, %+v", err, b)
	}
	if out, err := e.straddle("backup", "get", "-o", "yaml"); err != nil || !strings.Contains(out, "kind: BackupList") || !strings.Contains(out, "name: described") {
		t.Errorf("get -o yaml: %v\n%s", err, out)
	}
	if _, err := e.straddle("backup", "get", "absent"); err == nil || !strings.Contains(err.Error(), `backup "absent" not found in namespace straddle`) {
		t.Errorf("get absent: %v", err)
	}

	out, err = e.straddle("backup", "describe", "described", "--details")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Phase:                         PartiallyFailed",
		"Storage location:              default (filesystem " + e.locDir + ")",
		"Namespaces:                    shop\n",
		"  shop/db-0   data    node-a  Completed  3.0 GiB/3.0 GiB 100%  aabbccdd  -",
		"  shop/web-0  cache   node-b  Failed     0 B/1.0 GiB 0%        -         volume dir not found under /host_pods",
		"  shop/web-0  token   secret volumes are never backed up",
		"Resources (3 objects):\n  pods              2\n  deployments.apps  1",
		`pod shop/web-0 names volume "logs", which it does not have`,
		"  Files:            7 new, 1 changed, 42 unmodified",
		"  Bytes:            3.0 GiB read, 2.0 GiB added, 1.0 GiB stored",
		"straddle repo restore aabbccdd11223344556677889900aabbccddeeff00112233445566778899aabb --repo " + e.locDir + "/repositories/shop --password-file repository-password --target restore/shop/db-0/data",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe --details lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "shop/db-0 ") != 1 {
		t.Errorf("describe shows another backup's volume:\n%s", out)
	}
	if _, err := e.straddle("backup", "describe", "absent"); err == nil || !strings.Contains(err.Error(), `backup "absent" not found`) {
		t.Errorf("describe absent: %v", err)
	}
}

func (e *backupTestEnv) testLogs(t *testing.T) {
	if _, err := e.straddle("backup", "create", "logged"); err != nil {
		t.Fatal(err)
	}
	out, err := e.straddle("backup", "logs", "logged")
	if err != nil || !strings.Contains(out, `No events for backup "logged"`) {
		t.Errorf("logs without events: %v\n%s", err, out)
	}
	b := e.backup(t, "logged")
	p := e.newPVB(t, "logged", "shop", "db-0", "data", "node-a", v1.PodVolumeBackupStatus{Phase: v1.VolumePhaseFailed})
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	for i, ev := range []struct {
		kind, name string
		uid        string
		at         time.Duration
		typ        string
		reason     string
	}{
		{"PodVolumeBackup", p.Name, string(p.UID), 3 * time.Minute, corev1.EventTypeWarning, "VolumeFailed"},
		{"Backup", "logged", string(b.UID), 0, corev1.EventTypeNormal, "Started"},
		{"Backup", "logged", string(b.UID), 5 * time.Minute, corev1.EventTypeWarning, "PartiallyFailed"},
		{"Backup", "someone-else", "", time.Minute, corev1.EventTypeNormal, "NotOurs"},
	} {
		ts := metav1.NewTime(base.Add(ev.at))
		err := e.cl.Create(e.ctx, &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("logged.%d", i), Namespace: "straddle"},
			InvolvedObject: corev1.ObjectReference{APIVersion: v1.GroupVersion.String(), Kind: ev.kind, Name: ev.name, Namespace: "straddle",
				UID: types.UID(ev.uid)},
			Type: ev.typ, Reason: ev.reason, Message: ev.reason + " message", FirstTimestamp: ts, LastTimestamp: ts, Count: 1,
			Source: corev1.EventSource{Component: "straddle-controller"},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err = e.straddle("backup", "logs", "logged")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var got []string
	for _, l := range lines[1:] {
		got = append(got, strings.Join(strings.Fields(l)[1:5], " "))
	}
	want := []string{"backup Normal Started Started", "pvb shop/db-0/data Warning VolumeFailed", "backup Warning PartiallyFailed PartiallyFailed"}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("logs rows = %q, want %q:\n%s", got, want, out)
	}
	if !strings.HasPrefix(lines[1], base.UTC().Format(time.RFC3339)) {
		t.Errorf("first event's time: %q, want %s", lines[1], base.UTC().Format(time.RFC3339))
	}
}

func (e *backupTestEnv) testDelete(t *testing.T) {
	if _, err := e.straddle("backup", "create", "doomed"); err != nil {
		t.Fatal(err)
	}
	// A test's stdin is not a terminal: without --confirm nothing is deleted.
	if _, err := e.straddle("backup", "delete", "doomed"); err == nil || !strings.Contains(err.Error(), "without --confirm") {
		t.Errorf("delete without --confirm: %v", err)
	}
	e.backup(t, "doomed")
	out, err := e.straddle("backup", "delete", "doomed", "--confirm", "--wait")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Deleting backup "doomed" removes its 0 volume snapshot(s)`, "backups/doomed/", `Backup "doomed" deleted.`} {
		if !strings.Contains(out, want) {
			t.Errorf("delete output lacks %q:\n%s", want, out)
		}
	}
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: "straddle", Name: "doomed"}, &v1.Backup{}); !apierrors.IsNotFound(err) {
		t.Errorf("backup still there after delete --wait: %v", err)
	}

	// With a finalizer, as the controller's: --wait waits until the finalizer is removed.
	if _, err := e.straddle("backup", "create", "held"); err != nil {
		t.Fatal(err)
	}
	held := e.backup(t, "held")
	held.Finalizers = []string{"straddle.io/test-hold"}
	if err := e.cl.Update(e.ctx, held); err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	done := startStraddle(e.ctx, &buf, "backup", "delete", "held", "--confirm", "--wait", "--kubeconfig", e.kc)
	waitFor(t, "deletion to be requested", func() bool { return e.backup(t, "held").DeletionTimestamp != nil })
	select {
	case err := <-done:
		t.Fatalf("delete --wait returned while the finalizer held the backup: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	held = e.backup(t, "held")
	held.Finalizers = nil
	if err := e.cl.Update(e.ctx, held); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("delete --wait: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("delete --wait did not return once the backup was gone")
	}
	if _, err := e.straddle("backup", "delete", "held", "--confirm"); err == nil || !strings.Contains(err.Error(), `backup "held" not found`) {
		t.Errorf("deleting a gone backup: %v", err)
	}
}
