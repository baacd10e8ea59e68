package indexbench

import (
	"os"
	"strconv"
	"testing"

	"github.com/straddle-io/straddle/repo/index"
)

// small is a shape quick enough for every test run.
var small = Shape{Blobs: 50_000, BlobsPerPack: 16, PacksPerFile: 100}

func TestEveryIndexFindsEveryBlob(t *testing.T) {
	for _, tc := range []struct {
		run      func() (Result, error)
		min, max float64 // bytes a blob
	}{
		{func() (Result, error) { return Straddle(small, index.Paging{}) }, 48, 64},
		// Paged: the fences and the pack table stay in memory, the entries go to disk.
		{func() (Result, error) { return Straddle(small, index.Paging{Budget: 256 << 10, Dir: t.TempDir()}) }, 0.5, 16},
		{func() (Result, error) { return Restic(small) }, 64, 200},
	} {
		r, err := tc.run()
		if err != nil {
			t.Fatal(err)
		}
		if r.BytesPerBlob() < tc.min || r.BytesPerBlob() > tc.max || r.LookupsPerSecond <= 0 || r.FileBytes == 0 {
			t.Fatalf("%s: %.1f bytes a blob, %.0f lookups/s, %d bytes of files", r.Name, r.BytesPerBlob(), r.LookupsPerSecond, r.FileBytes)
		}
		t.Logf("%s: %.1f B/blob, load %.2fs, %.0f lookups/s", r.Name, r.BytesPerBlob(), r.LoadSeconds, r.LookupsPerSecond)
	}
}

// BenchmarkIndex measures the indexes at INDEX_BLOBS blobs (default 10,000,000; about 1.5 GB of memory for
// the restic model's JSON decoding):
//
//	go test -run '^$' -bench Index -benchtime 1x ./bench/indexbench
func BenchmarkIndex(b *testing.B) {
	shape := DefaultShape
	if s := os.Getenv("INDEX_BLOBS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		shape.Blobs = n
	}
	for _, bc := range []struct {
		name string
		run  func() (Result, error)
	}{
		{"straddle", func() (Result, error) { return Straddle(shape, index.Paging{}) }},
		{"straddle-paged", func() (Result, error) { return Straddle(shape, index.Paging{Budget: 64 << 20, Dir: b.TempDir()}) }},
		{"restic-model", func() (Result, error) { return Restic(shape) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				r, err := bc.run()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.BytesPerBlob(), "B/blob")
				b.ReportMetric(r.LoadCPUSeconds, "load-cpu-s")
				b.ReportMetric(r.LookupsPerCPUSecond, "lookups/cpu-s")
			}
		})
	}
}
