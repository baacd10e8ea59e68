//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// After a backup, a node-agent's /metrics holds exactly the bytes and files its PodVolumeBackups report in
// their status, and the controller's counts the ended backup; the pods get events for the volumes backed up
// and skipped (issue 9). After a restore into a mapped namespace, the same holds for the restore.
func TestMetricsMatchTheBackupsStats(t *testing.T) {
	const ns = "metered"
	data := fixtures{
		ns + "/db/data": func(dir string) error { return writeMixed(dir, 31) },
		ns + "/db/logs": func(dir string) error { return writeSmallFiles(dir, 50, 32) },
	}
	c := startCluster(t, clusterOptions{Fill: data.fill})
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	mustCreate(t, c.cl, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "creds"}, StringData: map[string]string{"k": "v"}})
	mustCreate(t, c.cl, testPod(ns, "db", nodeA, map[string]string{annBackupVolumes: "data,logs,creds"},
		emptyDirVolume("data"), emptyDirVolume("logs"), secretVolume("creds", "creds")))
	c.waitPodsRunning(t, ns, 1)

	c.createBackup(t, "metered", v1.BackupSpec{IncludedNamespaces: []string{ns}})
	b := c.waitBackup(t, "metered", backupTimeout)
	if b.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("backup %s: %v", b.Status.Phase, b.Status.Errors)
	}
	var want v1.VolumeStats
	var bytesDone, filesDone int64
	for key, pvb := range c.volumeBackups(t, "metered") {
		if pvb.Spec.Node != nodeA {
			t.Fatalf("%s backed up on %s, not %s", key, pvb.Spec.Node, nodeA)
		}
		s := pvb.Status.Stats
		want.BytesRead += s.BytesRead
		want.BytesAdded += s.BytesAdded
		want.BytesStored += s.BytesStored
		bytesDone += pvb.Status.Progress.BytesDone
		filesDone += pvb.Status.Progress.FilesDone
	}
	if want.BytesRead == 0 || want.BytesStored == 0 {
		t.Fatalf("the backup's stats are empty: %+v", want)
	}
	wantAgent := map[string]float64{
		"straddle_node_agent_backup_bytes_read_total":                  float64(want.BytesRead),
		"straddle_node_agent_backup_bytes_added_total":                 float64(want.BytesAdded),
		"straddle_node_agent_backup_bytes_stored_total":                float64(want.BytesStored),
		"straddle_node_agent_backup_bytes_total":                       float64(bytesDone),
		"straddle_node_agent_backup_files_total":                       float64(filesDone),
		`straddle_node_agent_volume_backups_total{result="completed"}`: 2,
		`straddle_node_agent_volume_backups_total{result="failed"}`:    0,
		"straddle_node_agent_volume_backup_duration_seconds_count":     2,
		"straddle_node_agent_volume_backups_running":                   0,
	}
	// The agent counts a volume as it returns from the backup, a moment after its status is written.
	c.waitFor(t, "node-agent "+nodeA+"'s metrics to match the backup's stats", 30*time.Second, func() (bool, error) {
		return matches(c.agents[nodeA].metricsURL(), wantAgent)
	})
	other, err := scrape(c.agents[nodeB].metricsURL())
	if err != nil {
		t.Fatal(err)
	}
	if other["straddle_node_agent_backup_bytes_read_total"] != 0 {
		t.Errorf("node-agent %s, which backed up nothing, counts %v bytes read", nodeB, other["straddle_node_agent_backup_bytes_read_total"])
	}
	c.waitFor(t, "the controller's metrics to count the backup", 30*time.Second, func() (bool, error) {
		return matches(c.controller.metricsURL(), map[string]float64{
			`straddle_controller_backups_total{phase="Completed"}`:                 1,
			`straddle_controller_backup_volumes_total{result="completed"}`:         2,
			`straddle_controller_backup_skipped_volumes_total{reason="secret"}`:    1,
			`straddle_controller_backup_duration_seconds_count{phase="Completed"}`: 1,
		})
	})

	// The pod itself says which volumes were backed up and which skipped, and by which backup.
	c.waitFor(t, "the pod's events", 30*time.Second, func() (bool, error) {
		list, err := c.cs.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, e := range list.Items {
			if e.Regarding.Kind == "Pod" && e.Regarding.Name == "db" {
				seen[e.Reason+": "+e.Note] = true
			}
		}
		for _, note := range []string{
			"VolumeBackedUp: volume data backed up by backup metered",
			"VolumeBackedUp: volume logs backed up by backup metered",
			"VolumeSkipped: volume creds skipped by backup metered: secret volume",
		} {
			if !hasPrefix(seen, note) {
				return false, fmt.Errorf("no event %q among %v", note, seen)
			}
		}
		return true, nil
	})
	c.checkRestoreMetrics(t, ns)
}

// checkRestoreMetrics restores the backup "metered" of ns into ns-copy and compares the restore's metrics and
// the restored pod's events with its PodVolumeRestores.
func (c *cluster) checkRestoreMetrics(t *testing.T, ns string) {
	t.Helper()
	copyNS := ns + "-copy"
	if res := c.cli(restoreTimeout, "restore", "create", "metered-copy", "--from-backup", "metered",
		"--namespace-mappings", ns+":"+copyNS, "--wait"); res.err != nil {
		t.Fatalf("restore create --wait: %s", res)
	}
	var list v1.PodVolumeRestoreList
	if err := c.cl.List(context.Background(), &list, client.InNamespace(installNamespace), client.MatchingLabels{v1.RestoreLabel: "metered-copy"}); err != nil {
		t.Fatal(err)
	}
	var bytesDone, filesDone int64
	for _, pvr := range list.Items {
		if pvr.Spec.Node != nodeA || pvr.Status.Phase != v1.VolumePhaseCompleted {
			t.Fatalf("PodVolumeRestore %s on %s is %s: %s", pvr.Name, pvr.Spec.Node, pvr.Status.Phase, pvr.Status.Message)
		}
		bytesDone += pvr.Status.Progress.BytesDone
		filesDone += pvr.Status.Progress.FilesDone
	}
	if len(list.Items) != 2 || bytesDone == 0 {
		t.Fatalf("%d PodVolumeRestores, %d bytes", len(list.Items), bytesDone)
	}
	c.waitFor(t, "node-agent "+nodeA+"'s restore metrics", 30*time.Second, func() (bool, error) {
		return matches(c.agents[nodeA].metricsURL(), map[string]float64{
			"straddle_node_agent_restore_bytes_total":                       float64(bytesDone),
			"straddle_node_agent_restore_files_total":                       float64(filesDone),
			`straddle_node_agent_volume_restores_total{result="completed"}`: 2,
		})
	})
	c.waitFor(t, "the controller's restore metrics", 30*time.Second, func() (bool, error) {
		return matches(c.controller.metricsURL(), map[string]float64{
			`straddle_controller_restores_total{phase="Completed"}`:         1,
			`straddle_controller_restore_volumes_total{result="completed"}`: 2,
		})
	})
	c.waitFor(t, "the restored pod's events", 30*time.Second, func() (bool, error) {
		list, err := c.cs.EventsV1().Events(copyNS).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, e := range list.Items {
			if e.Regarding.Kind == "Pod" && e.Regarding.Name == "db" {
				seen[e.Reason+": "+e.Note] = true
			}
		}
		for _, v := range []string{"data", "logs"} {
			if note := "VolumeRestored: volume " + v + " restored by restore metered-copy from backup metered"; !hasPrefix(seen, note) {
				return false, fmt.Errorf("no event %q among %v", note, seen)
			}
		}
		return true, nil
	})
}

func hasPrefix(set map[string]bool, prefix string) bool {
	for s := range set {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// matches scrapes url and compares the series named in want.
func matches(url string, want map[string]float64) (bool, error) {
	got, err := scrape(url)
	if err != nil {
		return false, err
	}
	var diffs []string
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			diffs = append(diffs, fmt.Sprintf("%s = %v (present %v), want %v", name, g, ok, w))
		}
	}
	if len(diffs) > 0 {
		return false, fmt.Errorf("%s", strings.Join(diffs, "; "))
	}
	return true, nil
}

// scrape reads a Prometheus text exposition into series (name with its labels as printed) → value.
func scrape(url string) (map[string]float64, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("scrape %s: %s: %s", url, resp.Status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: line %q: %w", url, line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return out, nil
}
