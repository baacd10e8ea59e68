//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/straddle-io/straddle/api/v1alpha1"
)

// Pod annotations that choose volumes (contract, DESIGN §6).
const (
	annBackupVolumes         = "backup.straddle.io/backup-volumes"
	annBackupVolumesExcludes = "backup.straddle.io/backup-volumes-excludes"
	annExcludePatterns       = "backup.straddle.io/exclude-patterns"
	veleroBackupVolumes      = "backup.velero.io/backup-volumes"
	veleroBackupExcludes     = "backup.velero.io/backup-volumes-excludes"
)

// bigSize is the size of the big volume's one file.
const bigSize = 200 << 20

// backupTimeout bounds one Backup of the acceptance data set on a busy 2-core machine.
const backupTimeout = 5 * time.Minute

// fixtures write each pod volume's data, by "namespace/pod/volume".
type fixtures map[string]func(dir string) error

func (f fixtures) fill(pod *corev1.Pod, volume, dir string) error {
	if write := f[pod.Namespace+"/"+pod.Name+"/"+volume]; write != nil {
		return write(dir)
	}
	return nil
}

func writeFile(name, body string) func(dir string) error {
	return func(dir string) error { return os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644) }
}

// acceptanceData is issue 5's data set: two namespaces, five pods on two nodes, eight volumes to back up
// (annotated, default-all with an exclude, Velero-annotated, 0 bytes, 1 byte, 10,000 small files, one 200 MiB
// file, a CSI claim), plus volumes that must not be taken: an unannotated one, two excluded ones and a
// Secret.
var acceptanceData = fixtures{
	"shop/web/html":     func(dir string) error { return writeMixed(dir, 11) },
	"shop/web/uploads":  func(dir string) error { return writeSmallFiles(dir, 10000, 12) },
	"shop/web/scratch":  writeFile("not-annotated.tmp", "the annotation mode leaves this volume out\n"),
	"shop/legacy/state": writeFile("state", "1"),
	"db/postgres/pgdata": func(dir string) error {
		return errors.Join(writeMixed(dir, 13), writeSmallFiles(filepath.Join(dir, "base"), 300, 14))
	},
	"db/postgres/wal": func(dir string) error {
		return writeRandomFile(filepath.Join(dir, "000000010000000000000001"), 4<<20, 15, 0o600)
	},
	"db/postgres/tmp":   writeFile("excluded.tmp", "excluded by backup.straddle.io/backup-volumes-excludes\n"),
	"db/big/blob":       func(dir string) error { return writeRandomFile(filepath.Join(dir, "blob.bin"), bigSize, 16, 0o644) },
	"db/metrics/series": func(dir string) error { return writeSmallFiles(dir, 300, 17) },
	"db/metrics/junk":   writeFile("excluded.tmp", "excluded by backup.velero.io/backup-volumes-excludes\n"),
	// shop/legacy/empty is the 0-byte volume: an empty folder. db/postgres/creds is a Secret volume, which
	// the simulator fills with the Secret's keys.
}

// metricsExcludes are the file exclusions of pod db/metrics, and metricsExcluded the paths of its volume
// series they leave out (the folder cache itself may stay, empty).
const metricsExcludes = "*.tmp,cache/**"

func metricsExcluded(rel string) bool {
	return strings.HasSuffix(rel, ".tmp") || rel == "cache" || strings.HasPrefix(rel, "cache/")
}

// The volumes each Backup must take, by "namespace/pod/volume", and the node of each pod.
var (
	shopVolumes = []string{"shop/legacy/empty", "shop/legacy/state", "shop/web/html", "shop/web/uploads"}
	dbVolumes   = []string{"db/big/blob", "db/metrics/series", "db/postgres/pgdata", "db/postgres/wal"}
	podNodes    = map[string]string{"shop/web": nodeA, "shop/legacy": nodeB, "db/postgres": nodeA, "db/big": nodeB, "db/metrics": nodeB}
)

// createAcceptancePods creates the namespaces, the Secret, the claim and the five pods, and waits until
// they run.
func (c *cluster) createAcceptancePods(t *testing.T) {
	t.Helper()
	for _, ns := range []string{"shop", "db"} {
		mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	mustCreate(t, c.cl, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db-creds", Namespace: "db"}, Data: map[string][]byte{"password": []byte("hunter2")}})
	c.createClaim(t, "db", "pgdata", "pv-pgdata", "10Gi")
	// "gone" is no volume of the pod: a warning, not a silent no-op.
	mustCreate(t, c.cl, testPod("shop", "web", podNodes["shop/web"], map[string]string{annBackupVolumes: "html, uploads, gone"},
		emptyDirVolume("html"), emptyDirVolume("uploads"), emptyDirVolume("scratch")))
	mustCreate(t, c.cl, testPod("shop", "legacy", podNodes["shop/legacy"], map[string]string{veleroBackupVolumes: "state,empty"},
		emptyDirVolume("state"), emptyDirVolume("empty")))
	mustCreate(t, c.cl, testPod("db", "postgres", podNodes["db/postgres"], map[string]string{annBackupVolumesExcludes: "tmp"},
		claimVolume("pgdata", "pgdata"), emptyDirVolume("wal"), emptyDirVolume("tmp"), secretVolume("creds", "db-creds")))
	mustCreate(t, c.cl, testPod("db", "big", podNodes["db/big"], nil, emptyDirVolume("blob")))
	mustCreate(t, c.cl, testPod("db", "metrics", podNodes["db/metrics"], map[string]string{veleroBackupExcludes: "junk", annExcludePatterns: metricsExcludes},
		emptyDirVolume("series"), emptyDirVolume("junk")))
	c.waitPodsRunning(t, "shop", 2)
	c.waitPodsRunning(t, "db", 3)
}

// TestBackupAcceptance is issue 5's acceptance test: every way of choosing volumes, every size of volume, a
// CSI claim and a skipped Secret; every snapshot restores byte for byte; the backup's metadata is in the
// bucket; no Backup is terminal before its volumes; a second backup of unchanged data adds almost nothing.
//
// The install defaults to default-all (install and controller --default-volumes-to-fs-backup), so shop's
// Backups turn it off themselves (the CLI flag set to false, spec.defaultVolumesToFsBackup false), db-1 turns
// it on itself, and db-2 leaves it to the install's default.
func TestBackupAcceptance(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: acceptanceData.fill, DefaultVolumesToFsBackup: true})
	c.createAcceptancePods(t)
	watch := c.watchPhases(t)
	defaultAll, annotated := true, false

	// Round 1: default-all for db through the API, annotations for shop through the CLI, both at once.
	round := time.Now()
	c.createBackup(t, "db-1", v1.BackupSpec{IncludedNamespaces: []string{"db"}, DefaultVolumesToFsBackup: &defaultAll})
	if res := c.cli(backupTimeout, "backup", "create", "shop-1", "--include-namespaces", "shop", "--default-volumes-to-fs-backup=false", "--wait"); res.err != nil {
		t.Errorf("backup create --wait must succeed for a Completed backup: %s", res)
		c.createBackupIfMissing(t, "shop-1", v1.BackupSpec{IncludedNamespaces: []string{"shop"}, DefaultVolumesToFsBackup: &annotated})
	}
	db1 := c.waitBackup(t, "db-1", backupTimeout)
	shop1 := c.waitBackup(t, "shop-1", backupTimeout)
	t.Logf("first backups of shop and db took %.1fs", time.Since(round).Seconds())
	shopPVBs := c.checkCompleted(t, shop1, shopVolumes)
	dbPVBs := c.checkCompleted(t, db1, dbVolumes)
	first := mergeMaps(shopPVBs, dbPVBs)

	t.Run("an annotation naming no volume of the pod is a warning", func(t *testing.T) {
		if !slices.ContainsFunc(shop1.Status.Warnings, func(w string) bool { return strings.Contains(w, "gone") }) {
			t.Errorf("Backup shop-1 warnings %q: want one about volume gone of pod shop/web", shop1.Status.Warnings)
		}
	})

	t.Run("the secret volume is skipped with its reason", func(t *testing.T) {
		i := slices.IndexFunc(db1.Status.SkippedVolumes, func(s v1.SkippedVolume) bool {
			return s.Namespace == "db" && s.Pod == "postgres" && s.Volume == "creds"
		})
		if i < 0 || strings.TrimSpace(db1.Status.SkippedVolumes[i].Reason) == "" {
			t.Errorf("Backup db-1 skippedVolumes %+v: want db/postgres volume creds with a reason", db1.Status.SkippedVolumes)
		}
	})

	t.Run("progress sums the volumes", func(t *testing.T) {
		if db1.Status.Progress.BytesDone < bigSize || db1.Status.Progress.BytesDone != db1.Status.Progress.BytesTotal {
			t.Errorf("Backup db-1 progress %+v: want every byte of at least %d done", db1.Status.Progress, bigSize)
		}
		if db1.Status.CompletionTimestamp == nil || db1.Status.Expiration == nil {
			t.Errorf("Backup db-1: completionTimestamp %v, expiration %v; want both set", db1.Status.CompletionTimestamp, db1.Status.Expiration)
		}
	})

	t.Run("every snapshot restores byte for byte", func(t *testing.T) {
		for _, key := range sortedKeys(first) {
			c.checkRestores(t, key, first[key])
		}
	})

	t.Run("the first backups added the data", func(t *testing.T) {
		var added int64
		for _, p := range first {
			added += p.Status.Stats.BytesAdded
		}
		// The big file is incompressible and new: at least its bytes were added.
		if added < bigSize {
			t.Errorf("first backups report %d bytes added; the random %d-byte file alone is new", added, bigSize)
		}
	})

	t.Run("volume sizes are reported to the byte", func(t *testing.T) {
		// Velero has reported tiny volumes as zero bytes; here 0, 1 and 200 MiB come out exact.
		for key, want := range map[string]int64{"shop/legacy/empty": 0, "shop/legacy/state": 1, "db/big/blob": bigSize} {
			if p := first[key].Status.Progress; p.BytesDone != want || p.BytesTotal != want {
				t.Errorf("PodVolumeBackup of %s reports progress %+v, want %d of %d bytes", key, p, want, want)
			}
		}
	})

	t.Run("the CLI shows the backups", func(t *testing.T) {
		res := c.cli(time.Minute, "backup", "get")
		if res.err != nil || !strings.Contains(res.stdout, "shop-1") || !strings.Contains(res.stdout, "db-1") || !strings.Contains(res.stdout, "Completed") {
			t.Errorf("backup get must list shop-1 and db-1 Completed: %s", res)
		}
		res = c.cli(time.Minute, "backup", "describe", "db-1", "--details")
		if res.err != nil {
			t.Fatalf("backup describe: %s", res)
		}
		for _, want := range []string{"postgres", "pgdata", "wal", "blob", "series", "creds", shortID(dbPVBs["db/big/blob"].Status.SnapshotID)} {
			if !strings.Contains(res.stdout, want) {
				t.Errorf("backup describe db-1 --details does not show %q:\n%s", want, res.stdout)
			}
		}
	})

	t.Run("the backup's metadata is in the bucket", func(t *testing.T) {
		for _, name := range []string{"shop-1", "db-1"} {
			objs := c.bucketObjects(t, "backups/"+name+"/")
			for _, want := range []string{"backup.json", "resources.tar.zst"} {
				if size, ok := objs["backups/"+name+"/"+want]; !ok || size == 0 {
					t.Errorf("bucket has no (or an empty) backups/%s/%s; objects there: %v", name, want, objs)
				}
			}
		}
	})

	// Round 2: the same data again; nothing changed, so almost nothing is added.
	round = time.Now()
	c.createBackup(t, "db-2", v1.BackupSpec{IncludedNamespaces: []string{"db"}})
	c.createBackup(t, "shop-2", v1.BackupSpec{IncludedNamespaces: []string{"shop"}, DefaultVolumesToFsBackup: &annotated})
	second := mergeMaps(c.checkCompleted(t, c.waitBackup(t, "db-2", backupTimeout), dbVolumes),
		c.checkCompleted(t, c.waitBackup(t, "shop-2", backupTimeout), shopVolumes))
	t.Logf("second backups of shop and db took %.1fs", time.Since(round).Seconds())
	t.Run("a second backup of unchanged data adds almost nothing", func(t *testing.T) {
		var data, added int64
		for _, key := range append(slices.Clone(shopVolumes), dbVolumes...) {
			data += c.dataSize(t, key)
			added += second[key].Status.Stats.BytesAdded
		}
		t.Logf("second backups added %d bytes for %d bytes of data", added, data)
		if added > data/100 {
			t.Errorf("second backups added %d bytes for %d bytes of unchanged data; want under 1%%", added, data)
		}
	})
	watch.check(t)
}

// killedSize is TestNodeAgentKilledMidBackup's volume: on idle cores a backup stores a few hundred MB a second,
// and the test must see half of it stored and a checkpoint after that before the backup ends.
const killedSize = 5 * bigSize

// TestNodeAgentKilledMidBackup SIGKILLs the node-agent backing up the big volume once at least half of it is
// stored and indexed by a checkpoint (the agents checkpoint every second here), and restarts it: the backup
// must resume, not start over and not fail. The PodVolumeBackup ends Completed with bytes_added well under the
// volume's size (what the checkpoint indexed is not uploaded again), it restores byte for byte, and the Backup
// is Completed.
func TestNodeAgentKilledMidBackup(t *testing.T) {
	c := startCluster(t, clusterOptions{Fill: fixtures{
		"vault/big/blob": func(dir string) error { return writeRandomFile(filepath.Join(dir, "blob.bin"), killedSize, 21, 0o600) },
	}.fill, NodeAgentArgs: []string{"--checkpoint-interval", "1s"}})
	mustCreate(t, c.cl, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vault"}})
	mustCreate(t, c.cl, testPod("vault", "big", nodeB, map[string]string{annBackupVolumes: "blob"}, emptyDirVolume("blob")))
	c.waitPodsRunning(t, "vault", 1)
	watch := c.watchPhases(t)
	c.createBackup(t, "killed", v1.BackupSpec{IncludedNamespaces: []string{"vault"}})
	start := time.Now()
	c.waitPickedUp(t, "killed")

	var pvb v1.PodVolumeBackup
	c.waitFor(t, "the big volume's PodVolumeBackup to start", time.Minute, func() (bool, error) {
		pvbs := c.volumeBackups(t, "killed")
		pvb = pvbs["vault/big/blob"]
		if terminalVolume(pvb.Status.Phase) {
			t.Fatalf("the big volume's backup ended %s before the test could kill its node-agent: the volume is too small to catch it mid-backup", pvb.Status.Phase)
		}
		return pvb.Status.Phase == v1.VolumePhaseInProgress, nil
	})
	if pvb.Spec.Node != nodeB {
		t.Fatalf("PodVolumeBackup %s is for node %q, want %s", pvb.Name, pvb.Spec.Node, nodeB)
	}
	// Kill once half the volume is in packs and a checkpoint written after that indexes them: a resumed
	// backup then has at most the other half to add.
	stored, indexes := c.storedData(t, "vault")
	half := int64(-1)
	c.waitFor(t, "half the big volume stored, then a checkpoint", 2*time.Minute, func() (bool, error) {
		if p := c.volumeBackups(t, "killed")["vault/big/blob"]; terminalVolume(p.Status.Phase) {
			t.Fatalf("the big volume's backup ended %s before the test could kill its node-agent: the volume is too small to catch it mid-backup", p.Status.Phase)
		}
		stored, indexes = c.storedData(t, "vault")
		if half < 0 && stored >= killedSize/2 {
			half = indexes
		}
		return half >= 0 && indexes > half, fmt.Errorf("%d bytes of packs, %d index objects", stored, indexes)
	})
	agent := c.agents[nodeB]
	agent.kill9(t)
	t.Logf("killed the node-agent of %s %.1fs after the Backup was created, with %d bytes of packs and %d index objects stored", nodeB, time.Since(start).Seconds(), stored, indexes)
	if err := c.cl.Get(context.Background(), client.ObjectKeyFromObject(&pvb), &pvb); err != nil {
		t.Fatal(err)
	}
	if terminalVolume(pvb.Status.Phase) {
		t.Fatalf("the big volume's backup ended %s before the kill landed; the test needs a slower or bigger volume", pvb.Status.Phase)
	}
	time.Sleep(time.Second)
	agent.restart(t)

	backup := c.waitBackup(t, "killed", backupTimeout)
	pvb = c.volumeBackups(t, "killed")["vault/big/blob"]
	if pvb.Status.Phase != v1.VolumePhaseCompleted || backup.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("after the restart the PodVolumeBackup is %s (%q) and the Backup %s; want both Completed: a restart resumes, it does not fail",
			pvb.Status.Phase, pvb.Status.Message, backup.Status.Phase)
	}
	if pvb.Annotations["straddle.io/attempts"] != "2" {
		t.Errorf("attempts annotation %q, want 2 (resumed once)", pvb.Annotations["straddle.io/attempts"])
	}
	added := pvb.Status.Stats.BytesAdded
	t.Logf("the resumed backup added %d bytes of the %d-byte volume (%.0f%%)", added, killedSize, 100*float64(added)/killedSize)
	if added >= killedSize*6/10 {
		t.Errorf("the resumed backup added %d bytes of a %d-byte volume of which at least half was stored and indexed before the kill; want under 60%%", added, killedSize)
	}
	c.checkRestores(t, "vault/big/blob", pvb)
	watch.check(t)
}

// storedData sums the bytes of a namespace's repository packs in the bucket and counts its index objects.
func (c *cluster) storedData(t testing.TB, namespace string) (packBytes, indexes int64) {
	t.Helper()
	for _, size := range c.bucketObjects(t, "repositories/"+namespace+"/data/") {
		packBytes += size
	}
	return packBytes, int64(len(c.bucketObjects(t, "repositories/"+namespace+"/index/")))
}

// createBackupIfMissing creates the Backup unless it exists, so a broken CLI fails its own check without
// hiding the rest of the test.
func (c *cluster) createBackupIfMissing(t testing.TB, name string, spec v1.BackupSpec) {
	t.Helper()
	err := c.cl.Get(context.Background(), client.ObjectKey{Namespace: installNamespace, Name: name}, &v1.Backup{})
	if apierrors.IsNotFound(err) {
		c.createBackup(t, name, spec)
	}
}

// checkCompleted checks a Backup is Completed with exactly the wanted volumes, each Completed with a
// snapshot on its pod's node, and returns its PodVolumeBackups.
func (c *cluster) checkCompleted(t *testing.T, b *v1.Backup, want []string) map[string]v1.PodVolumeBackup {
	t.Helper()
	pvbs := c.volumeBackups(t, b.Name)
	if got := sortedKeys(pvbs); !slices.Equal(got, want) {
		t.Errorf("Backup %s took volumes %v, want %v", b.Name, got, want)
	}
	if b.Status.Phase != v1.PhaseCompleted {
		t.Fatalf("Backup %s is %s, want Completed; errors %q", b.Name, b.Status.Phase, b.Status.Errors)
	}
	if b.Status.VolumesTotal != len(want) || b.Status.VolumesCompleted != len(want) || b.Status.VolumesFailed != 0 {
		t.Errorf("Backup %s counts %d volumes, %d completed, %d failed; want %d, %d, 0", b.Name,
			b.Status.VolumesTotal, b.Status.VolumesCompleted, b.Status.VolumesFailed, len(want), len(want))
	}
	for key, p := range pvbs {
		pod := p.Spec.Pod.Namespace + "/" + p.Spec.Pod.Name
		if p.Status.Phase != v1.VolumePhaseCompleted || p.Status.SnapshotID == "" {
			t.Errorf("PodVolumeBackup of %s: phase %q, snapshot %q, message %q; want Completed with a snapshot", key, p.Status.Phase, p.Status.SnapshotID, p.Status.Message)
		}
		if p.Spec.Node != podNodes[pod] {
			t.Errorf("PodVolumeBackup of %s is for node %q, want %s", key, p.Spec.Node, podNodes[pod])
		}
		if p.Spec.Volume == "pgdata" && p.Spec.PVC != "pgdata" {
			t.Errorf("PodVolumeBackup of %s names claim %q, want pgdata", key, p.Spec.PVC)
		}
		if !slices.ContainsFunc(p.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Kind == "Backup" && o.Name == b.Name }) {
			t.Errorf("PodVolumeBackup of %s is not owned by Backup %s: %+v", key, b.Name, p.OwnerReferences)
		}
	}
	return pvbs
}

// checkRestores restores a PodVolumeBackup's snapshot from its namespace's repository with `straddle repo
// restore` and compares it with the volume's folder on its node.
func (c *cluster) checkRestores(t *testing.T, key string, pvb v1.PodVolumeBackup) {
	t.Helper()
	if pvb.Status.SnapshotID == "" {
		t.Errorf("%s: no snapshot to restore", key)
		return
	}
	target := filepath.Join(t.TempDir(), "restore")
	c.restoreSnapshot(t, pvb.Spec.Pod.Namespace, pvb.Status.SnapshotID, target)
	var excluded func(string) bool
	if key == "db/metrics/series" {
		excluded = metricsExcluded
		if err := noneExcludedRestored(target, excluded); err != nil {
			t.Errorf("%s: %v", key, err)
		}
	}
	if err := compareTreesExcept(c.volumeDir(t, pvb.Spec.Pod.Namespace, pvb.Spec.Pod.Name, pvb.Spec.Volume), target, excluded); err != nil {
		t.Errorf("%s: snapshot %s does not restore the volume: %v", key, pvb.Status.SnapshotID, err)
	}
}

// dataSize sums the sizes of the files of a pod volume, "namespace/pod/volume".
func (c *cluster) dataSize(t testing.TB, key string) int64 {
	t.Helper()
	parts := strings.SplitN(key, "/", 3)
	var size int64
	err := filepath.WalkDir(c.volumeDir(t, parts[0], parts[1], parts[2]), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err == nil {
			size += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatalf("size of %s: %v", key, err)
	}
	return size
}

// noneExcludedRestored fails if a restored tree holds a file an exclude pattern left out; an excluded
// directory may stay as an empty folder.
func noneExcludedRestored(target string, excluded func(string) bool) error {
	entries, err := treeEntries(target)
	if err != nil {
		return err
	}
	for rel, mode := range entries {
		if excluded(rel) && !mode.IsDir() {
			return fmt.Errorf("excluded %s was backed up and restored", rel)
		}
	}
	return nil
}

// shortID is the prefix of a snapshot ID that tables show.
func shortID(id string) string { return id[:min(len(id), 8)] }

func mergeMaps[V any](maps ...map[string]V) map[string]V {
	out := map[string]V{}
	for _, m := range maps {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
