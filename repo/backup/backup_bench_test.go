package backup

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/repotest"
	"github.com/straddle-io/straddle/repo/storage/fs"
)

// BenchmarkFirstBackup backs up 256 MiB of half random, half repetitive data into a directory repository.
// Profile with: go test -run '^$' -bench FirstBackup -cpuprofile cpu.prof ./repo/backup
func BenchmarkFirstBackup(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var total int64
	for i := range 8 {
		data := repotest.RandomData(rng, 32<<20)
		total += int64(len(data))
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i))), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(total)
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		be, err := fs.Create(filepath.Join(b.TempDir(), "repo"))
		if err != nil {
			b.Fatal(err)
		}
		r, err := repo.Init(context.Background(), be, []byte("pw"), repo.InitOptions{KDF: crypto.TestKDF})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := Run(context.Background(), r, Options{Path: src}); err != nil {
			b.Fatal(err)
		}
	}
}
