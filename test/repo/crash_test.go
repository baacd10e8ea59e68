//go:build integration

package repo

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

// crashTrials is how many backups are SIGKILLed, each into a fresh repository.
const crashTrials = 20

// TestKilledBackupLeavesACorrectRepository SIGKILLs a backup at a random moment, again and again: check must
// pass right after (packs the killed run stored but did not index are notes, not errors), a re-run must not
// wait for the dead run's lock, and it must reuse what the killed run uploaded and indexed at a checkpoint.
func TestKilledBackupLeavesACorrectRepository(t *testing.T) {
	srv := miniotest.Start(t)
	srv.SetEnv(t)
	t.Setenv("STRADDLE_PASSWORD", "crash-proof")
	bucket := srv.NewBucket(t)
	src := filepath.Join(t.TempDir(), "src")
	// 64 MB of incompressible files of 100 KB to 3 MB: four 16 MB data packs, a few seconds of work.
	makeBigTree(t, src, 7, 64<<20, 100<<10, 3<<20)

	backupArgs := func(url string) []string {
		return []string{"repo", "backup", src, "--repo", url, "--host", "crash", "--json", "--checkpoint-interval", "200ms", "--lock-wait", "0s"}
	}
	// A full backup, unkilled, measures how long one takes on this machine, so the kills spread over it.
	calib := srv.URL(bucket, "calibration")
	mustRun(t, time.Minute, "repo", "init", "--repo", calib)
	full := mustRun(t, 2*time.Minute, backupArgs(calib)...)
	total := decode[backupJSON](t, full).BytesTotal
	t.Logf("an unkilled backup of %d bytes took %v", total, full.elapsed)

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill delays seeded with %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	killed, reused := 0, 0
	var lastURL string
	for trial := range crashTrials {
		url := srv.URL(bucket, fmt.Sprintf("trial-%02d", trial))
		lastURL = url
		mustRun(t, time.Minute, "repo", "init", "--repo", url)
		// Even trials kill at a random moment of the run; odd ones at a random moment after the first
		// checkpoint stored an index file, so that some kills surely leave indexed data to reuse.
		p := start(t, backupArgs(url)...)
		began := time.Now()
		if trial%2 == 1 {
			newObjects(t, srv, bucket, fmt.Sprintf("trial-%02d", trial)).waitFor(t, "index/", 1, p, 2*time.Minute)
			time.Sleep(time.Duration(0.1 * rng.Float64() * float64(full.elapsed)))
		} else {
			time.Sleep(time.Duration((0.05 + 0.5*rng.Float64()) * float64(full.elapsed)))
		}
		delay := time.Since(began)
		finished := p.exited()
		p.kill(t)
		if finished {
			t.Logf("trial %d: the backup ended before the kill at %v (%v)", trial, delay, p.err)
		} else {
			killed++
		}

		after := checkClean(t, url)
		rerun := run(t, 2*time.Minute, backupArgs(url)...)
		if rerun.err != nil {
			t.Fatalf("trial %d: the backup after a kill at %v failed: %v\n%s", trial, delay, rerun.err, rerun.stderr)
		}
		b := decode[backupJSON](t, rerun)
		if b.BytesTotal != total {
			t.Fatalf("trial %d: re-run saw %d bytes, want %d", trial, b.BytesTotal, total)
		}
		// A checkpoint indexed some packs: the re-run must not add that data again.
		if after.IndexFiles > 0 && !finished {
			if b.BytesAdded >= total {
				t.Errorf("trial %d: the killed run left %d index files, yet the re-run added all %d bytes again", trial, after.IndexFiles, b.BytesAdded)
			} else {
				reused++
			}
		}
		t.Logf("trial %d: killed after %v; then %d index files, %d packs, %d notes; re-run added %d of %d bytes in %v",
			trial, delay.Round(time.Millisecond), after.IndexFiles, after.Packs, len(after.Notes), b.BytesAdded, total, rerun.elapsed.Round(time.Millisecond))
		checkClean(t, url)
	}
	if killed < crashTrials/2 {
		t.Errorf("only %d of %d backups were still running when killed", killed, crashTrials)
	}
	if reused < 3 {
		t.Errorf("in %d trials only did the re-run reuse data a killed backup had indexed (%d kills); want at least 3", reused, killed)
	}
	t.Logf("%d backups killed; %d re-runs reused checkpointed data", killed, reused)

	// The last trial's snapshot holds every byte of the tree.
	c := checkClean(t, lastURL, "--read-data")
	if c.PacksRead == 0 {
		t.Errorf("check --read-data read no packs: %+v", c)
	}
	target := filepath.Join(t.TempDir(), "restored")
	mustRun(t, 2*time.Minute, "repo", "restore", "latest", "--repo", lastURL, "--target", target)
	repotest.CompareTrees(t, src, target)
}
