package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/straddle-io/straddle/bench/indexbench"
	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/backup"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/snapshot"
	"github.com/straddle-io/straddle/repo/storage/fs"
)

// scaleRows are the -sets names that are not data sets but measurements of scale (issue 11).
var scaleRows = map[string]func(ctx context.Context, w io.Writer, o options, work string) error{
	"index":     indexRow,
	"snapshots": snapshotsRow,
}

// indexRow measures the index at 10,000,000 blobs times the scale: Straddle's in memory and paged, and
// restic's format in a model of restic's layout (bench/indexbench).
func indexRow(_ context.Context, w io.Writer, o options, work string) error {
	shape := indexbench.DefaultShape
	shape.Blobs = max(10_000, int(float64(shape.Blobs)*o.scale))
	cache := filepath.Join(work, "index-cache")
	defer os.RemoveAll(cache)
	runs := []func() (indexbench.Result, error){
		func() (indexbench.Result, error) { return indexbench.Straddle(shape, index.Paging{}) },
		func() (indexbench.Result, error) {
			return indexbench.Straddle(shape, index.Paging{Budget: 64 << 20, Dir: cache})
		},
		func() (indexbench.Result, error) { return indexbench.Restic(shape) },
	}
	fmt.Fprintf(w, "### index: %d blobs, %d a pack, %d packs an index file (synthetic)\n\n", shape.Blobs, shape.BlobsPerPack, shape.PacksPerFile)
	fmt.Fprintln(w, "Times are CPU seconds of the process (user+system, all threads), with wall seconds in parentheses; rates are per CPU second.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| | heap, bytes a blob | heap, MiB | load from index files, CPU s (wall s) | lookups per CPU s, one goroutine (per wall s) | index files, MB |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, run := range runs {
		r, err := run()
		if err != nil {
			return err
		}
		logf("  %s: %.1f B/blob, load %.2f CPU s (%.2f s), %.0f lookups/CPU s (%.0f/s)", r.Name, r.BytesPerBlob(), r.LoadCPUSeconds, r.LoadSeconds, r.LookupsPerCPUSecond, r.LookupsPerSecond)
		fmt.Fprintf(w, "| %s | %.1f | %.0f | %.2f (%.2f) | %.0f (%.0f) | %.0f |\n", r.Name, r.BytesPerBlob(), float64(r.HeapBytes)/(1<<20),
			r.LoadCPUSeconds, r.LoadSeconds, r.LookupsPerCPUSecond, r.LookupsPerSecond, float64(r.FileBytes)/1e6)
	}
	fmt.Fprintln(w)
	return nil
}

// snapshotsRow makes a repository of 2,000 snapshots (times the scale) of mostly identical data, one file
// changed between snapshots, and times `straddle repo snapshots` (without and with a warm snapshot cache),
// check and a prune with nothing to delete at a tenth of the snapshots and at all of them.
func snapshotsRow(ctx context.Context, w io.Writer, o options, work string) error {
	total := max(20, int(2000*o.scale))
	runDir := filepath.Join(work, "run")
	_ = os.RemoveAll(runDir)
	defer os.RemoveAll(runDir)
	src, repoDir, cache := filepath.Join(runDir, "src"), filepath.Join(runDir, "repo"), filepath.Join(runDir, "cache")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%03d", i)), fmt.Appendf(nil, "file %d generation 0\n", i), 0o644); err != nil {
			return err
		}
	}
	be, err := fs.Create(repoDir)
	if err != nil {
		return err
	}
	// The default KDF, as the CLI's repositories have, so each command pays the same fixed cost as in use.
	r, err := repo.Init(ctx, be, []byte(password), repo.InitOptions{KDF: crypto.DefaultKDF})
	if err != nil {
		return err
	}
	env := []string{"STRADDLE_PASSWORD=" + password}
	cmd := func(args ...string) []string {
		return append([]string{o.straddle, "repo"}, append(args, "--repo", repoDir, "--cache-dir", cache)...)
	}
	type row struct{ cold, warm, check, prune phase }
	var rows []row
	var counts []int
	var parent *snapshot.Snapshot
	start := time.Now()
	for n := 1; n <= total; n++ {
		f := filepath.Join(src, fmt.Sprintf("f%03d", n%100))
		if err := os.WriteFile(f, fmt.Appendf(nil, "file %d generation %d\n", n%100, n), 0o644); err != nil {
			return err
		}
		res, err := backup.Run(ctx, r, backup.Options{Path: src, Host: "bench", Parent: parent})
		if err != nil {
			return err
		}
		parent = res.Snapshot
		if n != total/10 && n != total {
			continue
		}
		logf("  %d snapshots made in %.0f s", n, time.Since(start).Seconds())
		_ = os.RemoveAll(cache)
		var rw row
		for _, p := range []struct {
			dst  *phase
			args []string
		}{
			{&rw.cold, cmd("snapshots")}, {&rw.warm, cmd("snapshots")},
			{&rw.check, cmd("check")}, {&rw.prune, cmd("prune")},
		} {
			if *p.dst, err = execute(ctx, env, p.args, nil); err != nil {
				return err
			}
		}
		rows = append(rows, rw)
		counts = append(counts, n)
	}
	fmt.Fprintf(w, "### snapshots: %d snapshots of 100 files, one file changed between snapshots\n\n", total)
	fmt.Fprintln(w, "Wall time, with the command's CPU time (user+system) in parentheses.")
	fmt.Fprintln(w)
	// No peak RSS here: Linux charges a child the RSS of the process it was forked from, and this one holds
	// the repository it built, so the figure would be the harness's.
	fmt.Fprintln(w, "| snapshots | `snapshots`, empty cache, s | `snapshots`, warm cache, s | `check`, s | `prune` (nothing to delete), s |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|")
	for i, rw := range rows {
		fmt.Fprintf(w, "| %d | %.2f (%.2f) | %.2f (%.2f) | %.2f (%.2f) | %.2f (%.2f) |\n", counts[i], rw.cold.seconds, rw.cold.cpu,
			rw.warm.seconds, rw.warm.cpu, rw.check.seconds, rw.check.cpu, rw.prune.seconds, rw.prune.cpu)
	}
	fmt.Fprintln(w)
	return nil
}
