package prune_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/lock"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/prune"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/tree"
)

// twoSnapshots backs up two different trees (sharing only a few small files) and returns the sources.
func twoSnapshots(t *testing.T, r *repo.Repository) (src1, src2 string, s1, s2 *snapshot.Snapshot) {
	return twoSnapshotsOfSize(t, r, 12, 3<<20)
}

func twoSnapshotsOfSize(t *testing.T, r *repo.Repository, files, big int) (src1, src2 string, s1, s2 *snapshot.Snapshot) {
	t.Helper()
	base := t.TempDir()
	src1, src2 = filepath.Join(base, "one"), filepath.Join(base, "two")
	repotest.MakeTree(t, src1, repotest.TreeOptions{Seed: 1, Files: files, Big: big})
	repotest.MakeTree(t, src2, repotest.TreeOptions{Seed: 2, Files: files, Big: big * 2 / 3})
	return src1, src2, runBackup(t, r, src1), runBackup(t, r, src2)
}

func TestPruneFreesWhatForgottenSnapshotsUsed(t *testing.T) {
	r, be := repotest.New(t)
	_, src2, s1, s2 := twoSnapshots(t, r)
	packsBefore := countPrefix(t, be, "data/")
	forget(t, be, s1)

	res := mustPrune(t, repotest.Reopen(t, be), testOptions())
	if res.PacksDeleted == 0 || res.BytesFreed == 0 || res.Snapshots != 1 {
		t.Fatalf("prune freed nothing: %+v", res)
	}
	if after := countPrefix(t, be, "data/"); after >= packsBefore {
		t.Errorf("%d packs before, %d after, result %+v", packsBefore, after, res)
	}
	if notes := mustCheck(t, be, true); len(notes) != 0 {
		t.Errorf("check notes after prune: %v", notes)
	}
	mustRestore(t, be, s2, src2)
	if n := countPrefix(t, be, "locks/"); n != 0 {
		t.Errorf("%d locks left", n)
	}
	// Nothing is left to do.
	again := mustPrune(t, repotest.Reopen(t, be), testOptions())
	if again.PacksDeleted != 0 || again.PacksRepacked != 0 {
		t.Errorf("a second prune still found work: %+v", again)
	}
}

// onePartlyUsedPack stores a used and an unused blob in one data pack and a snapshot of one file made of
// the used blob.
func onePartlyUsedPack(t *testing.T, r *repo.Repository, usedLen, unusedLen int) (used, unused id.ID, usedData []byte) {
	t.Helper()
	ctx := context.Background()
	// Random data: zstd leaves it at its size, so the sealed sizes are near the raw ones.
	rng := rand.New(rand.NewPCG(uint64(usedLen), uint64(unusedLen)))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	usedData = random(usedLen)
	unusedData := random(unusedLen)
	var treeID id.ID
	_, err := r.WithWriter(ctx, repo.WriterOptions{}, func(ctx context.Context, w *repo.Writer) error {
		var err error
		if used, _, err = w.SaveBlob(ctx, pack.DataBlob, usedData); err != nil {
			return err
		}
		if unused, _, err = w.SaveBlob(ctx, pack.DataBlob, unusedData); err != nil {
			return err
		}
		tr := tree.Tree{Nodes: []tree.Node{{Name: "file", Type: tree.File, Mode: 0o644, Size: uint64(usedLen), Links: 1, Content: []id.ID{used}}}}
		treeID, _, err = w.SaveBlob(ctx, pack.TreeBlob, tr.Encode())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SaveSnapshot(ctx, &snapshot.Snapshot{Host: "test", Paths: []string{"/v"}, Tree: treeID}); err != nil {
		t.Fatal(err)
	}
	return used, unused, usedData
}

func TestPruneRepacksAPartlyUsedPack(t *testing.T) {
	r, be := repotest.New(t)
	used, unused, usedData := onePartlyUsedPack(t, r, 1000, 2000)
	oldPack, _ := r.Index().Lookup(pack.DataBlob, used)

	// Below the threshold nothing is repacked, and the unused bytes are reported.
	opts := testOptions()
	opts.RepackThreshold = 2
	kept := mustPrune(t, repotest.Reopen(t, be), opts)
	if kept.PacksRepacked != 0 || kept.PacksDeleted != 0 || kept.BytesUnused == 0 {
		t.Fatalf("threshold above 1: %+v", kept)
	}

	res := mustPrune(t, repotest.Reopen(t, be), testOptions())
	if res.PacksRepacked != 1 || res.BlobsRepacked != 1 || res.PacksDeleted != 1 || res.BytesFreed == 0 || res.BytesUnused != 0 {
		t.Fatalf("repack: %+v", res)
	}
	r2 := repotest.Reopen(t, be)
	e, ok := r2.Index().Lookup(pack.DataBlob, used)
	if !ok || e.Pack == oldPack.Pack {
		t.Fatalf("used blob after repack: %+v, %v (old pack %s)", e, ok, oldPack.Pack.Short())
	}
	if got, err := r2.LoadBlob(context.Background(), pack.DataBlob, used, nil); err != nil || !bytes.Equal(got, usedData) {
		t.Errorf("used blob reads back %d bytes, %v", len(got), err)
	}
	if r2.Index().Has(pack.DataBlob, unused) {
		t.Error("the unused blob is still indexed")
	}
	if _, err := be.Stat(context.Background(), pack.Name(oldPack.Pack)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the repacked pack is still stored: %v", err)
	}
	if notes := mustCheck(t, be, true); len(notes) != 0 {
		t.Errorf("check notes: %v", notes)
	}
}

// A backup that runs while prune plans deduplicates against packs prune means to delete; Delete, under the
// exclusive lock, sees its snapshot and keeps those packs.
func TestBackupDuringPlanningKeepsItsData(t *testing.T) {
	ctx := context.Background()
	r, be := repotest.New(t)
	src1, src2, s1, s2 := twoSnapshots(t, r)
	forget(t, be, s1)

	pr := repotest.Reopen(t, be)
	plan, err := prune.NewPlan(ctx, pr, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if planned := plan.Result(); planned.Snapshots != 1 {
		t.Fatalf("plan: %+v", planned)
	}
	// The backup loaded the index before prune's exclusive phase: everything of src1 is deduplicated.
	br := repotest.Reopen(t, be)
	res, err := backup.Run(ctx, br, backup.Options{Path: src1, Host: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Summary.BytesAdded != 0 {
		t.Fatalf("the backup added %d bytes; the test needs it to reuse the planned garbage", res.Summary.BytesAdded)
	}
	if err := plan.Repack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := plan.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := plan.Result(); got.PacksKept == 0 {
		t.Errorf("no pack kept for the new backup: %+v", got)
	}
	if notes := mustCheck(t, be, true); len(notes) != 0 {
		t.Errorf("check notes: %v", notes)
	}
	mustRestore(t, be, res.Snapshot, src1)
	mustRestore(t, be, s2, src2)
}

func TestDryRunDeletesNothing(t *testing.T) {
	r, be := repotest.New(t)
	_, _, s1, _ := twoSnapshots(t, r)
	onePartlyUsedPack(t, r, 1000, 3000)
	forget(t, be, s1)
	before := objects(t, be)
	opts := testOptions()
	opts.DryRun = true
	res := mustPrune(t, repotest.Reopen(t, be), opts)
	if !res.DryRun || res.PacksDeleted == 0 || res.PacksRepacked == 0 || res.BytesFreed == 0 {
		t.Errorf("dry run found nothing to do: %+v", res)
	}
	if after := objects(t, be); !slices.Equal(before, after) {
		t.Errorf("dry run changed the repository:\nbefore %v\nafter  %v", before, after)
	}
}

// failAfter fails every Put and Delete of repository data from the nth on, as a crash would stop them.
// Lock objects are spared so the test sees the data steps alone.
type failAfter struct {
	storage.Backend
	n, ops atomic.Int64
}

var errInjected = errors.New("injected storage failure")

func (f *failAfter) fail(name string) bool {
	return !strings.HasPrefix(name, "locks/") && f.ops.Add(1) >= f.n.Load()
}

func (f *failAfter) Put(ctx context.Context, name string, body io.ReaderAt, size int64) error {
	if f.fail(name) {
		return errInjected
	}
	return f.Backend.Put(ctx, name, body, size)
}

func (f *failAfter) Delete(ctx context.Context, name string) error {
	if f.fail(name) {
		return errInjected
	}
	return f.Backend.Delete(ctx, name)
}

// A prune stopped at each of its writes in turn leaves a repository that checks clean, and the next prune
// finishes the job.
func TestInterruptedPruneIsSafeAndResumes(t *testing.T) {
	r, base := repotest.New(t)
	// Small trees: the repository is copied, pruned twice and checked once per write of the prune.
	_, src2, s1, s2 := twoSnapshotsOfSize(t, r, 4, 3<<19)
	onePartlyUsedPack(t, r, 1000, 3000)
	forget(t, base, s1)
	for n := int64(1); ; n++ {
		be := clone(t, base)
		fb := &failAfter{Backend: be}
		fb.n.Store(n)
		_, err := prune.Run(context.Background(), repotest.Reopen(t, fb), testOptions())
		if err == nil {
			if n < 4 {
				t.Fatalf("prune made only %d writes", n-1)
			}
			t.Logf("prune stopped at each of its %d writes", n-1)
			break
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d: %v", n, err)
		}
		mustCheck(t, be, false) // the structure is what an interruption could break
		res := mustPrune(t, repotest.Reopen(t, be), testOptions())
		if notes := mustCheck(t, be, n%4 == 1); len(notes) != 0 {
			t.Errorf("write %d: after the resumed prune (%+v), check notes %v", n, res, notes)
		}
		if again := mustPrune(t, repotest.Reopen(t, be), testOptions()); again.PacksDeleted != 0 || again.PacksRepacked != 0 {
			t.Errorf("write %d: a third prune still had work: %+v", n, again)
		}
		if n == 1 || n%5 == 0 {
			mustRestore(t, be, s2, src2)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// While a backup holds its shared lock past --max-wait, prune deletes nothing, says who held the repository,
// and leaves it correct; the next prune, with the backup gone, does the work.
func TestPruneGivesUpWhenBackupsOutlastMaxWait(t *testing.T) {
	ctx := context.Background()
	r, be := repotest.New(t)
	_, src2, s1, s2 := twoSnapshots(t, r)
	onePartlyUsedPack(t, r, 1000, 3000)
	forget(t, be, s1)
	before := countPrefix(t, be, "data/")

	stop, done := make(chan struct{}), make(chan error, 1)
	taken := make(chan struct{})
	go func() {
		done <- lock.WithLock(ctx, repotest.Reopen(t, be), lock.Shared, "backup", lock.Options{Host: "node-b", PID: 42}, func(context.Context) error {
			close(taken)
			<-stop
			return nil
		})
	}()
	<-taken
	opts := testOptions()
	opts.MaxWait = 30 * time.Millisecond
	_, err := prune.Run(ctx, repotest.Reopen(t, be), opts)
	if !errors.Is(err, lock.ErrLocked) || !strings.Contains(err.Error(), "prune deleted nothing") || !strings.Contains(err.Error(), "backup on host node-b pid 42") {
		t.Fatalf("prune beside a long backup: %v", err)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The repacked copies are there beside the originals, and nothing was deleted.
	if after := countPrefix(t, be, "data/"); after <= before {
		t.Errorf("%d packs before, %d after the stopped prune: want the repacked ones added", before, after)
	}
	mustCheck(t, be, true)
	res := mustPrune(t, repotest.Reopen(t, be), testOptions())
	if res.PacksDeleted == 0 {
		t.Errorf("the next prune deleted nothing: %+v", res)
	}
	if notes := mustCheck(t, be, true); len(notes) != 0 {
		t.Errorf("check notes: %v", notes)
	}
	mustRestore(t, be, s2, src2)
}

// newObjects runs a writer session on a copy of be and returns the objects it added, without adding them to be.
func newObjects(t *testing.T, be storage.Backend, data []byte) (packs, indexFiles map[string][]byte) {
	t.Helper()
	scratch := clone(t, be)
	before := objects(t, scratch)
	r := repotest.Reopen(t, scratch)
	if _, err := r.WithWriter(context.Background(), repo.WriterOptions{}, func(ctx context.Context, w *repo.Writer) error {
		_, _, err := w.SaveBlob(ctx, pack.DataBlob, data)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	packs, indexFiles = map[string][]byte{}, map[string][]byte{}
	for _, name := range objects(t, scratch) {
		if slices.Contains(before, name) {
			continue
		}
		buf, err := storage.ReadAll(context.Background(), scratch, name)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(name, "index/") {
			indexFiles[name] = buf
		} else {
			packs[name] = buf
		}
	}
	if len(packs) != 1 || len(indexFiles) != 1 {
		t.Fatalf("session stored %d packs and %d index files", len(packs), len(indexFiles))
	}
	return packs, indexFiles
}

func putAll(t *testing.T, be storage.Backend, objs map[string][]byte) {
	t.Helper()
	for name, buf := range objs {
		if err := storage.PutBytes(context.Background(), be, name, buf); err != nil {
			t.Fatal(err)
		}
	}
}

// A pack no index lists is deleted (a killed backup's), unless its index arrives before the deletion phase
// (a backup that was still running while prune planned).
func TestUnindexedPacks(t *testing.T) {
	ctx := context.Background()
	r, be := repotest.New(t)
	_, src2, _, s2 := twoSnapshots(t, r)
	killedPacks, _ := newObjects(t, be, []byte("a killed backup's only blob"))
	slowPacks, slowIndex := newObjects(t, be, []byte("a running backup's blob"))
	putAll(t, be, killedPacks)
	putAll(t, be, slowPacks)

	plan, err := prune.NewPlan(ctx, repotest.Reopen(t, be), testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Result(); got.UnindexedPacks != 2 {
		t.Fatalf("planned %+v, want 2 unindexed packs", got)
	}
	putAll(t, be, slowIndex) // the running backup finishes
	if err := plan.Repack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := plan.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := plan.Result(); got.PacksDeleted != 1 || got.PacksKept != 1 {
		t.Errorf("result %+v, want the killed backup's pack deleted and the other kept", got)
	}
	for name := range killedPacks {
		if _, err := be.Stat(ctx, name); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("the killed backup's pack %s is still there: %v", name, err)
		}
	}
	for name := range slowPacks {
		if _, err := be.Stat(ctx, name); err != nil {
			t.Errorf("the running backup's pack %s is gone: %v", name, err)
		}
	}
	if !repotest.Reopen(t, be).Index().Has(pack.DataBlob, r.BlobID([]byte("a running backup's blob"))) {
		t.Error("the running backup's blob is not indexed")
	}
	mustCheck(t, be, true)
	mustRestore(t, be, s2, src2)
}
