//go:build integration

package repo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/storage/s3"
	"github.com/straddle-io/straddle/repo/storage/s3/miniotest"
)

// randomBytes returns n bytes from rng: incompressible, so each byte costs the backup real work.
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n - n%8; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// writeFile writes data at dir/rel, making parent directories.
func writeFile(t testing.TB, dir, rel string, data []byte) {
	t.Helper()
	if err := writeFileE(dir, rel, data); err != nil {
		t.Fatal(err)
	}
}

// writeFileE is writeFile for goroutines other than the test's.
func writeFileE(dir, rel string, data []byte) error {
	p := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

// makeBigTree writes files of random sizes between minSize and maxSize until total bytes are written.
func makeBigTree(t testing.TB, dir string, seed uint64, total, minSize, maxSize int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0xc0ffee))
	for i, left := 0, total; left > 0; i++ {
		n := min(left, minSize+rng.IntN(maxSize-minSize+1))
		writeFile(t, dir, fmt.Sprintf("d%d/file-%03d", i%4, i), randomBytes(rng, n))
		left -= n
	}
}

// copyTree copies src to dst with cp -a, keeping modes and times, so a restore can be compared to it later.
func copyTree(src, dst string) error {
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	return nil
}

// objects counts a repository's objects straight from the bucket, without a straddle process.
type objects struct{ be storage.Backend }

func newObjects(t testing.TB, srv *miniotest.Server, bucket, prefix string) objects {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	be, err := s3.Open(ctx, srv.Options(bucket, prefix))
	if err != nil {
		t.Fatalf("open bucket %s/%s: %v", bucket, prefix, err)
	}
	return objects{be: be}
}

// count counts the objects under dir, such as "locks/" or "index/".
func (o objects) count(t testing.TB, dir string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	if err := o.be.List(ctx, dir, func(storage.Info) error { n++; return nil }); err != nil {
		t.Fatalf("list %s: %v", dir, err)
	}
	return n
}

// waitFor waits until at least want objects are under dir, and reports whether they came before p ended;
// past the timeout it fails the test.
func (o objects) waitFor(t testing.TB, dir string, want int, p *proc, timeout time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for o.count(t, dir) < want {
		if p.exited() {
			return false
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %d objects under %s within %v", want, dir, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// waitForLocks waits until the repository holds want locks; p ending first fails the test.
func (o objects) waitForLocks(t testing.TB, want int, p *proc, timeout time.Duration) {
	t.Helper()
	if !o.waitFor(t, "locks/", want, p, timeout) {
		t.Fatalf("straddle %v ended (%v) before its lock was seen; raise the tree size\nstderr:\n%s", p.args, p.err, p.stderr.String())
	}
}
