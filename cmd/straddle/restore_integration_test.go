//go:build integration

package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// restoreTestEnv is an API server with Straddle's CRDs and the install namespace, without the controller or
// node-agents: each test writes the statuses they would.
type restoreTestEnv struct {
	kc       string
	cl       client.Client
	ctx      context.Context
	straddle func(args ...string) (string, error)
}

func TestRestoreCommands(t *testing.T) {
	kc, cl := controlPlane(t)
	ctx := context.Background()
	if err := cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "straddle"}}); err != nil {
		t.Fatal(err)
	}
	e := &restoreTestEnv{kc: kc, cl: cl, ctx: ctx}
	e.straddle = func(args ...string) (string, error) {
		return straddle(t, append(args, "--kubeconfig", kc)...)
	}
	t.Run("create", e.testCreate)
	t.Run("wait", e.testWait)
	t.Run("wait stops on Ctrl-C", e.testWaitInterrupted)
	t.Run("get and describe", e.testGetDescribe)
	t.Run("logs", e.testLogs)
}

func (e *restoreTestEnv) restore(t *testing.T, name string) *v1.Restore {
	t.Helper()
	var r v1.Restore
	if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: "straddle", Name: name}, &r); err != nil {
		t.Fatalf("get restore %s: %v", name, err)
	}
	return &r
}

// newBackup creates a Backup in the given phase, as the controller would have left it.
func (e *restoreTestEnv) newBackup(t *testing.T, name string, phase v1.Phase) {
	t.Helper()
	b := &v1.Backup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "straddle"}}
	if err := e.cl.Create(e.ctx, b); err != nil {
		t.Fatal(err)
	}
	b.Status.Phase = phase
	if err := e.cl.Status().Update(e.ctx, b); err != nil {
		t.Fatal(err)
	}
}

func (e *restoreTestEnv) testCreate(t *testing.T) {
	e.newBackup(t, "nightly", v1.PhaseCompleted)
	out, err := e.straddle("restore", "create", "back", "--from-backup", "nightly", "--include-namespaces", "voting,shop",
		"--exclude-namespaces", "kube-system", "--namespace-mappings", "voting:voting-copy,shop:shop-2")
	if err != nil {
		t.Fatal(err)
	}
	if out != "Restore \"back\" created from backup \"nightly\". See: straddle restore describe back\n" {
		t.Errorf("create printed %q", out)
	}
	spec := e.restore(t, "back").Spec
	if spec.BackupName != "nightly" || strings.Join(spec.IncludedNamespaces, ",") != "voting,shop" || strings.Join(spec.ExcludedNamespaces, ",") != "kube-system" ||
		len(spec.NamespaceMapping) != 2 || spec.NamespaceMapping["voting"] != "voting-copy" || spec.NamespaceMapping["shop"] != "shop-2" {
		t.Errorf("spec = %+v", spec)
	}

	// Without a name: <backup>-<UTC timestamp>. A backup this cluster does not hold is read from storage.
	before := time.Now().UTC().Add(-time.Second)
	out, err = e.straddle("restore", "create", "--from-backup", "from-another-cluster")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `Backup "from-another-cluster" is not in this cluster: the controller reads it from the storage location.`) {
		t.Errorf("create of a backup not in the cluster does not say so: %q", out)
	}
	name := regexp.MustCompile(`"(from-another-cluster-\d{14})"`).FindStringSubmatch(out)
	if name == nil {
		t.Fatalf("create without a name printed %q", out)
	}
	stamp, err := time.Parse(restoreNameTimeFormat, strings.TrimPrefix(name[1], "from-another-cluster-"))
	if err != nil || stamp.Before(before.Truncate(time.Second)) || stamp.After(time.Now().UTC()) {
		t.Errorf("default name %s: its time %v is not now (%v)", name[1], stamp, err)
	}
	if r := e.restore(t, name[1]); r.Spec.BackupName != "from-another-cluster" || r.Spec.NamespaceMapping != nil || r.Spec.IncludedNamespaces != nil {
		t.Errorf("spec = %+v", r.Spec)
	}

	e.newBackup(t, "partly", v1.PhasePartiallyFailed)
	if _, err := e.straddle("restore", "create", "from-partly", "--from-backup", "partly"); err != nil {
		t.Errorf("restore of a PartiallyFailed backup: %v", err)
	}
	e.newBackup(t, "running", v1.PhaseInProgress)
	e.newBackup(t, "broken", v1.PhaseFailed)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"back", "--from-backup", "nightly"}, `restore "back" already exists in namespace straddle`},
		{[]string{"early", "--from-backup", "running"}, `backup "running" is InProgress, not Completed or PartiallyFailed`},
		{[]string{"hopeless", "--from-backup", "broken"}, `backup "broken" is Failed, so there is nothing to restore from it`},
		{[]string{"lost", "--from-backup", "nightly", "-n", "not-installed"}, "namespace not-installed not found; is Straddle installed there (straddle install -n not-installed)?"},
	} {
		if _, err := e.straddle(append([]string{"restore", "create"}, c.args...)...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %v: %v, want %q", c.args, err, c.want)
		}
	}
	for _, refused := range []string{"early", "hopeless"} {
		if err := e.cl.Get(e.ctx, client.ObjectKey{Namespace: "straddle", Name: refused}, &v1.Restore{}); err == nil {
			t.Errorf("restore %s was created though its backup cannot be restored", refused)
		}
	}
}

// newPVR creates a PodVolumeRestore as the controller would (name, labels, owner), with the status a
// node-agent would write.
func (e *restoreTestEnv) newPVR(t *testing.T, restore, ns, pod, volume, node string, status v1.PodVolumeRestoreStatus) *v1.PodVolumeRestore {
	t.Helper()
	r := e.restore(t, restore)
	podUID := "uid-" + ns + "-" + pod
	sum := sha256.Sum256([]byte(podUID + "/" + volume))
	ctrl := true
	p := &v1.PodVolumeRestore{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%x", restore, sum[:5]), Namespace: "straddle",
			Labels:          map[string]string{v1.RestoreLabel: restore, v1.NodeLabel: node},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1.GroupVersion.String(), Kind: "Restore", Name: restore, UID: r.UID, Controller: &ctrl}}},
		Spec: v1.PodVolumeRestoreSpec{Node: node, Pod: v1.PodReference{Namespace: ns, Name: pod, UID: podUID}, Volume: volume, StorageLocation: "default",
			SnapshotID: fmt.Sprintf("%x", sha256.Sum256([]byte(ns+pod+volume))), SourceNamespace: strings.TrimSuffix(ns, "-copy")},
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

// setStatus writes a Restore's status as the controller would.
func (e *restoreTestEnv) setStatus(t *testing.T, name string, mutate func(*v1.RestoreStatus)) {
	t.Helper()
	r := e.restore(t, name)
	mutate(&r.Status)
	if err := e.cl.Status().Update(e.ctx, r); err != nil {
		t.Fatal(err)
	}
}

func (e *restoreTestEnv) waitCreated(t *testing.T, name string, done <-chan error) {
	t.Helper()
	waitFor(t, "restore "+name+" to be created", func() bool {
		select {
		case err := <-done:
			t.Fatalf("create --wait ended before the restore was there: %v", err)
		default:
		}
		return e.cl.Get(e.ctx, client.ObjectKey{Namespace: "straddle", Name: name}, &v1.Restore{}) == nil
	})
}

func (e *restoreTestEnv) testWait(t *testing.T) {
	const failure = "volume dir of pod voting-copy/db-0 not found under /host_pods"
	for _, c := range []struct {
		phase  v1.Phase
		failed bool
		want   string // in the error; empty for success
	}{
		{v1.PhaseCompleted, false, ""},
		{v1.PhasePartiallyFailed, true, `ended PartiallyFailed: volume voting-copy/db-0/data failed: ` + failure},
		{v1.PhaseFailed, true, `ended Failed: volume voting-copy/db-0/data failed: ` + failure},
	} {
		t.Run(string(c.phase), func(t *testing.T) {
			name := "wait-" + strings.ToLower(string(c.phase))
			var out syncBuffer
			done := startStraddle(e.ctx, &out, "restore", "create", name, "--from-backup", "nightly", "--namespace-mappings", "voting:voting-copy",
				"--wait", "--kubeconfig", e.kc)
			e.waitCreated(t, name, done)

			now := metav1.Now()
			e.setStatus(t, name, func(s *v1.RestoreStatus) {
				s.Phase, s.StartTimestamp, s.VolumesTotal = v1.PhaseInProgress, &now, 2
				s.Progress = v1.Progress{BytesDone: 1 << 20, BytesTotal: 4 << 20}
			})
			waitFor(t, "the InProgress line", func() bool { return strings.Contains(out.String(), "InProgress") })

			dbStatus := v1.PodVolumeRestoreStatus{Phase: v1.VolumePhaseCompleted, Progress: v1.Progress{BytesDone: 1 << 20, BytesTotal: 1 << 20}}
			if c.failed {
				dbStatus = v1.PodVolumeRestoreStatus{Phase: v1.VolumePhaseFailed, Message: failure}
			}
			e.newPVR(t, name, "voting-copy", "db-0", "data", "node-a", dbStatus)
			webPhase := v1.VolumePhaseCompleted
			if c.phase == v1.PhaseFailed {
				webPhase = v1.VolumePhaseFailed
			}
			e.newPVR(t, name, "voting-copy", "web-0", "cache", "node-b", v1.PodVolumeRestoreStatus{Phase: webPhase})
			select {
			case err := <-done:
				t.Fatalf("create --wait ended while InProgress: %v", err)
			case <-time.After(1500 * time.Millisecond):
			}
			e.setStatus(t, name, func(s *v1.RestoreStatus) {
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
				t.Fatalf("create --wait did not end after the restore turned %s; output:\n%s", c.phase, out.String())
			}
			switch {
			case c.want == "" && err != nil:
				t.Errorf("create --wait of a Completed restore: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("create --wait of a %s restore: %v, want %q", c.phase, err, c.want)
			}
			if strings.Contains(err2str(err), "web-0") && c.phase == v1.PhasePartiallyFailed {
				t.Errorf("error names a volume that did not fail: %v", err)
			}
			for _, want := range []string{`Restore "` + name + `" created from backup "nightly".`, `Restore "` + name + `": InProgress, 0/2 volumes done`,
				`Restore "` + name + `": ` + string(c.phase)} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
			if c.failed && !strings.Contains(out.String(), "volume voting-copy/db-0/data on node-a: Failed: "+failure) {
				t.Errorf("output does not say the volume failed:\n%s", out.String())
			}
			if !c.failed && !strings.Contains(out.String(), "volume voting-copy/db-0/data on node-a: Completed, 1.0 MiB/1.0 MiB from snapshot ") {
				t.Errorf("output does not say the volume completed:\n%s", out.String())
			}
		})
	}
}

func (e *restoreTestEnv) testWaitInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var out syncBuffer
	done := startStraddle(ctx, &out, "restore", "create", "interrupted", "--from-backup", "nightly", "--wait", "--kubeconfig", e.kc)
	e.waitCreated(t, "interrupted", done)
	cancel()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), `stopped waiting; restore "interrupted" goes on`) {
			t.Errorf("interrupted wait: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("create --wait did not stop when its context was cancelled")
	}
	e.restore(t, "interrupted") // still there
}

func (e *restoreTestEnv) testGetDescribe(t *testing.T) {
	if _, err := e.straddle("restore", "create", "described", "--from-backup", "nightly", "--namespace-mappings", "voting:voting-copy"); err != nil {
		t.Fatal(err)
	}
	start, end := metav1.NewTime(time.Now().Add(-time.Hour)), metav1.NewTime(time.Now().Add(-10*time.Minute))
	e.setStatus(t, "described", func(s *v1.RestoreStatus) {
		s.Phase, s.StartTimestamp, s.CompletionTimestamp = v1.PhasePartiallyFailed, &start, &end
		s.VolumesTotal, s.VolumesCompleted, s.VolumesFailed = 2, 1, 1
		s.Progress = v1.Progress{BytesDone: 3 << 30, BytesTotal: 4 << 30}
		s.Resources = []v1.ResourceCount{{Resource: "statefulsets.apps", Count: 1}, {Resource: "services", Count: 2}}
		s.SkippedResources = []v1.SkippedResource{{Resource: "services", Namespace: "voting-copy", Name: "frontend", Reason: "already exists"}}
		s.Errors = []string{"1 of 2 volumes failed"}
	})
	db := e.newPVR(t, "described", "voting-copy", "db-0", "data", "node-a", v1.PodVolumeRestoreStatus{Phase: v1.VolumePhaseCompleted,
		Progress: v1.Progress{BytesDone: 3 << 30, BytesTotal: 3 << 30}, StartTimestamp: &start, CompletionTimestamp: &end})
	e.newPVR(t, "described", "voting-copy", "frontend-7d9f", "cache", "node-b", v1.PodVolumeRestoreStatus{Phase: v1.VolumePhaseFailed,
		Message: "read snapshot: repository repositories/voting not found", Progress: v1.Progress{BytesTotal: 1 << 30}})
	// Another restore's volume must not show up.
	e.newPVR(t, "back", "voting-copy", "db-0", "data", "node-a", v1.PodVolumeRestoreStatus{Phase: v1.VolumePhaseCompleted})

	out, err := e.straddle("restore", "get")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, "BACKUP") || !strings.Contains(out, "COMPLETED") {
		t.Errorf("get has no header:\n%s", out)
	}
	var line string
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "described ") {
			line = strings.Join(strings.Fields(l), " ")
		}
	}
	if line != "described nightly PartiallyFailed 1/2 (1 failed) 60m ago 10m ago" {
		t.Errorf("get row = %q:\n%s", line, out)
	}
	for _, name := range []string{"back", "from-partly", "wait-completed"} {
		if !strings.Contains(out, "\n"+name+" ") {
			t.Errorf("get lacks restore %s:\n%s", name, out)
		}
	}
	out, err = e.straddle("restore", "get", "described", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r v1.Restore
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Kind != "Restore" || r.Status.VolumesFailed != 1 || r.Spec.NamespaceMapping["voting"] != "voting-copy" {
		t.Errorf("get -o json: %v, %+v", err, r)
	}
	if out, err := e.straddle("restore", "get", "-o", "yaml"); err != nil || !strings.Contains(out, "kind: RestoreList") || !strings.Contains(out, "name: described") {
		t.Errorf("get -o yaml: %v\n%s", err, out)
	}
	if _, err := e.straddle("restore", "get", "absent"); err == nil || !strings.Contains(err.Error(), `restore "absent" not found in namespace straddle`) {
		t.Errorf("get absent: %v", err)
	}

	out, err = e.straddle("restore", "describe", "described")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Phase:              PartiallyFailed\n",
		"Backup:             nightly\n",
		"Namespace mapping:  voting -> voting-copy\n",
		"Errors:\n  - 1 of 2 volumes failed\n",
		"Resources restored (3 objects):\n  statefulsets.apps  1\n  services           2\n",
		"Skipped resources (1):\n  RESOURCE  NAME                  REASON\n  services  voting-copy/frontend  already exists\n",
		"  voting-copy/db-0           data    node-a  Completed  3.0 GiB/3.0 GiB 100%  " + db.Spec.SnapshotID[:8] + "  -\n",
		"  voting-copy/frontend-7d9f  cache   node-b  Failed     0 B/1.0 GiB 0%        ",
		"read snapshot: repository repositories/voting not found\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "voting-copy/db-0 ") != 1 || strings.Contains(out, db.Spec.SnapshotID) {
		t.Errorf("describe shows another restore's volume, or full IDs without --details:\n%s", out)
	}
	out, err = e.straddle("restore", "describe", "described", "--details")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Volume voting-copy/db-0/data:\n",
		"  Snapshot:          " + db.Spec.SnapshotID + "\n",
		"  From namespace:    voting (repository repositories/voting in the location)\n",
		"  Started:           " + start.UTC().Format("2006-01-02 15:04:05 MST") + " (60m ago)\n",
		"  Completed:         " + end.UTC().Format("2006-01-02 15:04:05 MST") + " (10m ago)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe --details lacks %q:\n%s", want, out)
		}
	}
	if _, err := e.straddle("restore", "describe", "absent"); err == nil || !strings.Contains(err.Error(), `restore "absent" not found`) {
		t.Errorf("describe absent: %v", err)
	}
}

func (e *restoreTestEnv) testLogs(t *testing.T) {
	if _, err := e.straddle("restore", "create", "logged", "--from-backup", "nightly"); err != nil {
		t.Fatal(err)
	}
	out, err := e.straddle("restore", "logs", "logged")
	if err != nil || !strings.Contains(out, `No events for restore "logged"`) {
		t.Errorf("logs without events: %v\n%s", err, out)
	}
	r := e.restore(t, "logged")
	p := e.newPVR(t, "logged", "voting", "db-0", "data", "node-a", v1.PodVolumeRestoreStatus{Phase: v1.VolumePhaseFailed})
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	for i, ev := range []struct {
		kind, name string
		uid        string
		at         time.Duration
		typ        string
		reason     string
	}{
		{"PodVolumeRestore", p.Name, string(p.UID), 3 * time.Minute, corev1.EventTypeWarning, "VolumeFailed"},
		{"Restore", "logged", string(r.UID), 0, corev1.EventTypeNormal, "Started"},
		{"Restore", "logged", string(r.UID), 5 * time.Minute, corev1.EventTypeWarning, "PartiallyFailed"},
		{"Restore", "someone-else", "", time.Minute, corev1.EventTypeNormal, "NotOurs"},
		{"Backup", "logged", "", 2 * time.Minute, corev1.EventTypeNormal, "ABackupOfTheSameName"},
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
	out, err = e.straddle("restore", "logs", "logged")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var got []string
	for _, l := range lines[1:] {
		got = append(got, strings.Join(strings.Fields(l)[1:5], " "))
	}
	want := []string{"restore Normal Started Started", "pvr voting/db-0/data Warning VolumeFailed", "restore Warning PartiallyFailed PartiallyFailed"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("logs rows = %q, want %q:\n%s", got, want, out)
	}
	if !strings.HasPrefix(lines[1], base.UTC().Format(time.RFC3339)) {
		t.Errorf("first event's time: %q, want %s", lines[1], base.UTC().Format(time.RFC3339))
	}
}
