//go:build integration

package repo

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

const (
	writers = 4
	// Each writer runs at least minRounds rounds, and more (up to maxRounds, within writersBudget) until a
	// prune has deleted something while the writers ran. Six rounds let hot/cycle's content of rounds 1 and
	// 2, stored in small packs that prune repacks once forgotten, come back in rounds 4 and 5: with prune's
	// step that keeps what new snapshots use switched off, this test fails (seen twice in two runs).
	minRounds     = 6
	maxRounds     = 8
	writersBudget = 100 * time.Second
)

// writerTree is the directory one writer backs up, changed a little every round.
type writerTree struct {
	dir  string
	host string
	seed uint64
}

// generate writes round 0: files shared by every writer (so writers dedup against each other), files of its
// own, a 1.5 MB file cut into several chunks, and "hot" files rewritten every round (so forgotten rounds
// leave whole packs of garbage).
func (w writerTree) generate(t testing.TB) {
	shared := rand.New(rand.NewPCG(999, 999))
	for i := range 40 {
		writeFile(t, w.dir, fmt.Sprintf("shared/s%03d", i), repotest.RandomData(shared, shared.IntN(40<<10)))
	}
	own := rand.New(rand.NewPCG(w.seed, 1))
	for i := range 250 {
		writeFile(t, w.dir, fmt.Sprintf("own/%d/f%03d", i%5, i), repotest.RandomData(own, own.IntN(24<<10)))
	}
	writeFile(t, w.dir, "big.bin", randomBytes(own, 1536<<10))
	if err := w.rewriteHot(0); err != nil {
		t.Fatal(err)
	}
}

// rewriteHot gives the hot files new content. hot/cycle repeats its content every third round: with
// --keep-last 2, the content a backup writes then is that of the round just forgotten, garbage that a prune
// planning at the same time may mean to delete; prune must keep it for the new snapshot.
func (w writerTree) rewriteHot(round int) error {
	rng := rand.New(rand.NewPCG(w.seed, uint64(100+round)))
	for i := range 5 {
		if err := writeFileE(w.dir, fmt.Sprintf("hot/h%d", i), randomBytes(rng, 40<<10+rng.IntN(40<<10))); err != nil {
			return err
		}
	}
	cycle := rand.New(rand.NewPCG(w.seed, uint64(300+round%3)))
	return writeFileE(w.dir, "hot/cycle", randomBytes(cycle, 64<<10))
}

// change makes round's tree from the previous one: hot files rewritten, a file added, one removed.
func (w writerTree) change(round int) error {
	if err := w.rewriteHot(round); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(w.seed, uint64(200+round)))
	if err := writeFileE(w.dir, fmt.Sprintf("new/r%02d", round), repotest.RandomData(rng, 1+rng.IntN(30<<10))); err != nil {
		return err
	}
	return os.Remove(filepath.Join(w.dir, fmt.Sprintf("own/%d/f%03d", round%5, round)))
}

// TestManyWritersWithPrune runs four backup processes of four trees, round after round with forget, while a
// fifth process prunes in a loop. Afterwards the repository checks clean with every byte read, and every
// remaining snapshot restores exactly the tree of its round.
func TestManyWritersWithPrune(t *testing.T) {
	srv := miniotest.Start(t)
	srv.SetEnv(t)
	t.Setenv("STRADDLE_PASSWORD", "writers-proof")
	url := srv.URL(srv.NewBucket(t), "many")
	mustRun(t, time.Minute, "repo", "init", "--repo", url)
	base := t.TempDir()

	var (
		mu      sync.Mutex
		rounds  = map[string]string{} // snapshot ID → copy of the tree it was taken of
		deleted atomic.Bool           // a prune deleted packs while writers ran
		stop    = make(chan struct{}) // closed when every writer is done
	)
	begin := time.Now()
	var wg sync.WaitGroup
	for i := range writers {
		w := writerTree{dir: filepath.Join(base, fmt.Sprintf("w%d", i), "data"), host: fmt.Sprintf("writer-%d", i), seed: uint64(i + 1)}
		w.generate(t)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(w.seed, 7))
			for round := 0; round < maxRounds; round++ {
				if round >= minRounds && (deleted.Load() || time.Since(begin) > writersBudget) {
					return
				}
				if round > 0 {
					if err := w.change(round); err != nil {
						t.Errorf("%s round %d: change the tree: %v", w.host, round, err)
						return
					}
				}
				res := runE(3*time.Minute, "repo", "backup", w.dir, "--repo", url, "--host", w.host, "--json", "--lock-wait", "2m")
				if res.err != nil {
					t.Errorf("%s round %d: backup: %v\n%s", w.host, round, res.err, res.stderr)
					return
				}
				b, err := decodeE[backupJSON](res)
				if err != nil {
					t.Errorf("%s round %d: %v", w.host, round, err)
					return
				}
				keep := filepath.Join(base, "rounds", fmt.Sprintf("%s-r%d", w.host, round))
				if err := os.MkdirAll(filepath.Dir(keep), 0o755); err != nil {
					t.Error(err)
					return
				}
				if err := copyTree(w.dir, keep); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				rounds[b.SnapshotID] = keep
				mu.Unlock()
				t.Logf("%s round %d: snapshot %.8s added %d of %d bytes in %v", w.host, round, b.SnapshotID, b.BytesAdded, b.BytesTotal, res.elapsed.Round(time.Millisecond))
				res = runE(time.Minute, "repo", "forget", "--repo", url, "--keep-last", "2", "--host", w.host)
				if res.err != nil {
					t.Errorf("%s round %d: forget: %v\n%s", w.host, round, res.err, res.stderr)
					return
				}
				// A pause between rounds leaves moments when no backup runs, which prune's deletion needs.
				time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
			}
		})
	}

	var pruneWG sync.WaitGroup
	var prunes, refused atomic.Int64
	pruneWG.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			res := runE(2*time.Minute, "repo", "prune", "--repo", url, "--json", "--max-wait", "3s", "--lock-wait", "1m")
			prunes.Add(1)
			switch {
			case res.err != nil && strings.Contains(res.stderr, "prune deleted nothing"):
				refused.Add(1) // backups held the repository for longer than --max-wait: expected
			case res.err != nil:
				t.Errorf("prune failed: %v\n%s", res.err, res.stderr)
				return
			default:
				pr, err := decodeE[pruneJSON](res)
				if err != nil {
					t.Error(err)
					return
				}
				t.Logf("prune: %+v in %v", pr, res.elapsed.Round(time.Millisecond))
				if pr.PacksDeleted > 0 {
					deleted.Store(true)
				}
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	wg.Wait()
	close(stop)
	pruneWG.Wait()
	t.Logf("writers done after %v; %d prunes, %d refused for live backups", time.Since(begin).Round(time.Second), prunes.Load(), refused.Load())
	if t.Failed() {
		t.FailNow()
	}
	if !deleted.Load() {
		t.Errorf("no prune deleted anything while the writers ran (%d prunes, %d refused)", prunes.Load(), refused.Load())
	}

	// Quiet now: one more prune collects the last forgets' garbage, then everything is read back.
	pr := decode[pruneJSON](t, mustRun(t, 2*time.Minute, "repo", "prune", "--repo", url, "--json", "--max-wait", "30s"))
	t.Logf("final prune: %+v", pr)
	c := checkClean(t, url, "--read-data")
	t.Logf("check --read-data: %d snapshots, %d index files, %d packs read", c.Snapshots, c.IndexFiles, c.PacksRead)
	snaps := decode[[]snapshotJSON](t, mustRun(t, time.Minute, "repo", "snapshots", "--repo", url, "--json"))
	perHost := map[string]int{}
	for _, s := range snaps {
		perHost[s.Host]++
		keep, ok := rounds[s.ID]
		if !ok {
			t.Errorf("snapshot %s of %s was made by no round", s.ID, s.Host)
			continue
		}
		target := filepath.Join(base, "restored", s.ID)
		mustRun(t, 2*time.Minute, "repo", "restore", s.ID, "--repo", url, "--target", target)
		repotest.CompareTrees(t, keep, target)
	}
	for i := range writers {
		if h := fmt.Sprintf("writer-%d", i); perHost[h] != 2 {
			t.Errorf("%s has %d snapshots after forget --keep-last 2; want 2", h, perHost[h])
		}
	}
}
