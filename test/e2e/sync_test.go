//go:build e2e

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
	"github.com/straddle-io/straddle/deploy"
)

// syncPeriod is the second cluster's --backup-sync-period; syncMargin is what a sync may take on top (listing
// and creating objects on a loaded two-core machine).
const (
	syncPeriod = 5 * time.Second
	syncMargin = 10 * time.Second
)

// TestBackupSync is issue 7's "a second control plane against the same bucket lists the first one's Backups
// within one sync period": cluster 2 sees cluster 1's backup with its PodVolumeBackups, restores it onto its
// own node-agents, and loses it when cluster 1 deletes it.
func TestBackupSync(t *testing.T) {
	ctx := context.Background()
	c1 := startCluster(t, clusterOptions{Fill: votingFill})
	c1.createVoting(t)
	orig := filepath.Join(c1.dir, "original")
	c1.copyVolumes(t, votingNS, orig)
	if res := c1.cli(backupTimeout, "backup", "create", votingBackup, "--include-namespaces", votingNS, "--wait"); res.err != nil {
		t.Fatalf("backup create --wait: %s", res)
	}
	var b1 v1.Backup
	if err := c1.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: votingBackup}, &b1); err != nil {
		t.Fatal(err)
	}
	pvbs1 := c1.volumeBackups(t, votingBackup)

	var sec corev1.Secret
	if err := c1.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: deploy.RepositoryPasswordSecret}, &sec); err != nil {
		t.Fatalf("read the repository password: %v", err)
	}
	pw := filepath.Join(t.TempDir(), "repository-password")
	if err := os.WriteFile(pw, sec.Data[deploy.RepositoryPasswordKey], 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := startCluster(t, clusterOptions{Fill: votingFill, Storage: &sharedStorage{minio: c1.minio, bucket: c1.bucket},
		InstallArgs: []string{"--repository-password-file", pw}, ControllerArgs: []string{"--backup-sync-period", syncPeriod.String()}})

	// startCluster returns once the location is Available: from then on the next sync finds the backup.
	start := time.Now()
	var b2 v1.Backup
	c2.waitFor(t, "cluster 1's backup in cluster 2", syncPeriod+syncMargin, func() (bool, error) {
		err := c2.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: votingBackup}, &b2)
		return err == nil && b2.Status.Phase == v1.PhaseCompleted, client.IgnoreNotFound(err)
	})
	t.Logf("cluster 2 listed the backup %s after its location was Available (sync period %s)", time.Since(start).Round(time.Millisecond), syncPeriod)
	if b2.Annotations[v1.SyncedFromAnnotation] != deploy.DefaultLocationName || b2.Status.VolumesTotal != b1.Status.VolumesTotal ||
		b2.Status.VolumesCompleted != b1.Status.VolumesCompleted || !b2.Status.CompletionTimestamp.Equal(b1.Status.CompletionTimestamp) {
		t.Errorf("synced backup: annotations %v, status %+v; cluster 1's status %+v", b2.Annotations, b2.Status, b1.Status)
	}
	pvbs2 := c2.volumeBackups(t, votingBackup)
	if len(pvbs2) != len(pvbs1) || len(pvbs1) == 0 {
		t.Fatalf("cluster 2 has %d PodVolumeBackups of the backup, cluster 1 %d", len(pvbs2), len(pvbs1))
	}
	for key, p1 := range pvbs1 {
		p2 := pvbs2[key]
		if _, labelled := p2.Labels[v1.NodeLabel]; labelled || p2.Status.Phase != v1.VolumePhaseCompleted || p2.Status.SnapshotID != p1.Status.SnapshotID {
			t.Errorf("synced PodVolumeBackup %s: labels %v, status %+v; cluster 1's snapshot %s", key, p2.Labels, p2.Status, p1.Status.SnapshotID)
		}
	}
	if res := c2.cli(time.Minute, "backup", "describe", votingBackup); res.err != nil || !strings.Contains(res.stdout, "Synced from storage location "+deploy.DefaultLocationName) {
		t.Errorf("backup describe in cluster 2: %s", res)
	}
	if res := c2.cli(time.Minute, "backup", "get"); res.err != nil || !strings.Contains(res.stdout, votingBackup) {
		t.Errorf("backup get in cluster 2: %s", res)
	}

	if res := c2.cli(restoreTimeout, "restore", "create", "from-cluster-1", "--from-backup", votingBackup, "--wait"); res.err != nil {
		t.Fatalf("restore create --wait in cluster 2: %s", res)
	}
	c2.checkRestored(t, "from-cluster-1", votingNS, orig)

	start = time.Now()
	if res := c1.cli(backupTimeout, "backup", "delete", votingBackup, "--confirm", "--wait"); res.err != nil {
		t.Fatalf("backup delete in cluster 1: %s", res)
	}
	t.Logf("cluster 1 deleted the backup in %s", time.Since(start).Round(time.Millisecond))
	c2.waitFor(t, "the backup deleted in cluster 1 to go from cluster 2", 2*syncPeriod+syncMargin, func() (bool, error) {
		err := c2.cl.Get(ctx, client.ObjectKey{Namespace: installNamespace, Name: votingBackup}, &v1.Backup{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	t.Logf("cluster 2 removed the backup %s after cluster 1 started deleting it", time.Since(start).Round(time.Millisecond))
	if objs := c1.bucketObjects(t, "backups/"+votingBackup+"/"); len(objs) != 0 {
		t.Errorf("the backup's folder still holds %v", objs)
	}
}
