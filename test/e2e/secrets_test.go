//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/controller/resources"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/s3"
)

// Issue 12's secrets: two namespaces backed up (two repositories), a backup running while `straddle
// repository-password rotate` runs, then the new password opens both repositories and the old one neither, a
// backup after the rotation completes, and a restore works. Last, nothing the cluster shows (process logs,
// Events, the objects' specs and statuses, describe and logs output) nor the backups in the bucket (a backup
// of every namespace, the install's included) holds the repository passwords or the S3 secret key.
func TestRepositoryPasswordRotation(t *testing.T) {
	c := startCluster(t, clusterOptions{ControllerArgs: []string{"--password-rotation-grace", "3s"}})
	apps := map[string]string{"alpha": nodeA, "beta": nodeB}
	for ns, node := range apps {
		mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		mustCreate(t, c.cl, testPod(ns, "app", node, map[string]string{annBackupVolumes: "data"}, emptyDirVolume("data")))
	}
	for ns := range apps {
		c.waitPodsRunning(t, ns, 1)
		// beta's volume is big enough that its backup is still running while the rotation starts.
		size := int64(2 << 20)
		if ns == "beta" {
			size = 64 << 20
		}
		if err := writeRandomFile(filepath.Join(c.volumeDir(t, ns, "app", "data"), "data.bin"), size, 7, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	spec := v1.BackupSpec{IncludedNamespaces: []string{"alpha", "beta"}}
	c.createBackup(t, "before", spec)
	if b := c.waitBackup(t, "before", backupTimeout); b.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("Backup before is %s: %q", b.Status.Phase, b.Status.Errors)
	}
	oldEnv := c.repoEnv(t)
	oldPw := passwordOf(oldEnv)

	// A backup runs while the password rotates.
	if err := writeRandomFile(filepath.Join(c.volumeDir(t, "beta", "app", "data"), "data.bin"), 64<<20, 8, 0o640); err != nil {
		t.Fatal(err)
	}
	c.createBackup(t, "during", spec)
	c.waitPickedUp(t, "during")
	start := time.Now()
	rotated := c.cli(5*time.Minute, "repository-password", "rotate")
	if rotated.err != nil {
		t.Fatalf("repository-password rotate: %s", rotated)
	}
	t.Logf("rotation took %.1fs:\n%s", time.Since(start).Seconds(), rotated.stdout)
	for _, want := range []string{
		"storage location default: rotated; the new password opens 2 repositories (alpha, beta), the old one none",
		"generated a random new repository password in Secret straddle/straddle-repository-password; save it now",
	} {
		if !strings.Contains(rotated.stdout, want) {
			t.Errorf("rotate printed no line %q:\n%s", want, rotated.stdout)
		}
	}
	end := time.Now()
	if b := c.waitBackup(t, "during", backupTimeout); b.Status.Phase != v1.PhaseCompleted {
		t.Errorf("Backup during, which ran while the password rotated, is %s: %q", b.Status.Phase, b.Status.Errors)
	}
	for key, pvb := range c.volumeBackups(t, "during") {
		if st := pvb.Status; st.StartTimestamp != nil && st.CompletionTimestamp != nil {
			// Whole seconds: how the volume's backup overlapped the rotation, for the record.
			t.Logf("volume %s backed up from %+.0fs to %+.0fs of the rotation's start (it ended at %+.1fs)", key,
				st.StartTimestamp.Sub(start).Seconds(), st.CompletionTimestamp.Sub(start).Seconds(), end.Sub(start).Seconds())
		}
	}

	newEnv := c.repoEnv(t)
	newPw := passwordOf(newEnv)
	if newPw == oldPw {
		t.Fatal("the Secret still holds the old password after the rotation")
	}
	for ns := range apps {
		ids := c.repoSnapshots(t, ns) // with the Secret's, new, password
		for _, b := range []string{"before", "during"} {
			if !hasSnapshot(ids, c.volumeBackups(t, b)[ns+"/app/data"].Status.SnapshotID) {
				t.Errorf("the new password lists %v in %s's repository, without Backup %s's snapshot", ids, ns, b)
			}
		}
		res := runStraddle(time.Minute, oldEnv, "repo", "snapshots", "--repo", c.repositoryURL(ns))
		if res.err == nil || !strings.Contains(res.stderr, "wrong password") {
			t.Errorf("the old password on %s's repository after the rotation: %s", ns, res)
		}
	}
	c.createBackup(t, "after", spec)
	if b := c.waitBackup(t, "after", backupTimeout); b.Status.Phase != v1.PhaseCompleted {
		t.Errorf("Backup after the rotation is %s: %q", b.Status.Phase, b.Status.Errors)
	}
	if res := c.cli(restoreTimeout, "restore", "create", "alpha-copy", "--from-backup", "after", "--namespace-mappings", "alpha:alpha-copy", "--wait"); res.err != nil {
		t.Fatalf("restore after the rotation: %s", res)
	}

	// A backup of every namespace, the install's included: its resource archive goes to the bucket, which must
	// not hold the keys to itself.
	c.createBackup(t, "everything", v1.BackupSpec{})
	if b := c.waitBackup(t, "everything", backupTimeout); b.Status.Phase != v1.PhaseCompleted {
		t.Errorf("Backup everything is %s: %q", b.Status.Phase, b.Status.Errors)
	}

	outputs := map[string]string{"repository-password rotate": rotated.stdout + rotated.stderr}
	for _, args := range [][]string{
		{"backup", "describe", "after", "--details"}, {"backup", "logs", "after"}, {"backup", "get"},
		{"restore", "describe", "alpha-copy"}, {"restore", "logs", "alpha-copy"},
	} {
		res := c.cli(time.Minute, args...)
		if res.err != nil {
			t.Errorf("%s", res)
		}
		outputs[strings.Join(args, " ")] = res.stdout + res.stderr
	}
	c.checkNoSecretsShown(t, outputs, map[string]string{"the old repository password": oldPw, "the new repository password": newPw, "the S3 secret key": c.minio.SecretKey})
}

// passwordOf picks the repository password out of a repoEnv.
func passwordOf(env []string) string {
	for _, e := range env {
		if pw, ok := strings.CutPrefix(e, "STRADDLE_PASSWORD="); ok {
			return pw
		}
	}
	return ""
}

// checkNoSecretsShown fails naming every place that shows one of secrets (by what it is), as it is or in
// base64: the process logs the harness keeps, every Event, every Straddle object (spec and status), and the
// command outputs given.
func (c *cluster) checkNoSecretsShown(t *testing.T, outputs map[string]string, secrets map[string]string) {
	t.Helper()
	places := map[string]string{}
	for what, out := range outputs {
		places["the output of straddle "+what] = out
	}
	logs, err := os.ReadDir(c.logDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range logs {
		b, err := os.ReadFile(filepath.Join(c.logDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		places["process log "+e.Name()] = string(b)
	}
	ctx := context.Background()
	events, err := c.cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) == 0 {
		t.Error("the cluster has no Events: the check of them would prove nothing")
	}
	for _, ev := range events.Items {
		places[fmt.Sprintf("Event %s/%s (%s on %s %s)", ev.Namespace, ev.Name, ev.Reason, ev.InvolvedObject.Kind, ev.InvolvedObject.Name)] = mustJSON(t, ev)
	}
	for _, list := range []client.ObjectList{&v1.BackupStorageLocationList{}, &v1.BackupList{}, &v1.PodVolumeBackupList{}, &v1.RestoreList{},
		&v1.PodVolumeRestoreList{}, &v1.BackupRepositoryList{}, &v1.ScheduleList{}} {
		if err := c.cl.List(ctx, list, client.InNamespace(installNamespace)); err != nil {
			t.Fatal(err)
		}
		places[fmt.Sprintf("the %T objects", list)] = mustJSON(t, list)
	}
	for name, text := range c.backupsInBucket(t) {
		places["object "+name+" in the bucket"] = text
	}
	for what, secret := range secrets {
		if len(secret) < 16 {
			t.Fatalf("%s is %d characters: too short to look for", what, len(secret))
		}
		for place, text := range places {
			for _, form := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret))} {
				if strings.Contains(text, form) {
					t.Errorf("%s shows %s", place, what)
				}
			}
		}
	}
	t.Logf("looked for %d secrets in %d places (%d process logs, %d Events)", len(secrets), len(places), len(logs), len(events.Items))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// backupsInBucket reads every object of the bucket's backups/ folder, the resource archives unpacked.
func (c *cluster) backupsInBucket(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	be, err := s3.Open(ctx, c.minio.Options(c.bucket, ""))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name := range c.bucketObjects(t, "backups/") {
		b, err := storage.ReadAll(ctx, be, name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(name, "/"+resources.ArchiveName) {
			entries, err := resources.Read(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("read %s: %v", name, err)
			}
			if len(entries) == 0 {
				t.Errorf("%s holds no objects", name)
			}
			for _, e := range entries {
				out[name+":"+e.Name] = string(e.Data)
			}
			continue
		}
		out[name] = string(b)
	}
	return out
}
