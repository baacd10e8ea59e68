package repo_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/check"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/repotest"
)

// Many goroutines store overlapping blobs of every size at once: each is stored exactly once, packs stay
// within their size, and every blob reads back.
func TestConcurrentSaversStoreEachBlobOnce(t *testing.T) {
	r, be := repotest.New(t) // 1 MiB packs: many fill while others are being sealed into
	rng := rand.New(rand.NewPCG(9, 9))
	blobs := make([][]byte, 300)
	for i := range blobs {
		size := rng.IntN(200 << 10)
		if i%50 == 0 {
			size = 3 << 20 // larger than a pack
		}
		blobs[i] = repotest.RandomData(rng, size)
	}
	var added sync.Map
	stats, err := r.WithWriter(ctx, repo.WriterOptions{Uploaders: 3}, func(ctx context.Context, w *repo.Writer) error {
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for g := range 8 {
			wg.Go(func() {
				for k := range blobs {
					i := (k + g*37) % len(blobs) // every goroutine saves every blob, in different orders
					blobID, isNew, err := w.SaveBlob(ctx, pack.BlobType(i%2), blobs[i])
					if err != nil {
						errs <- err
						return
					}
					if isNew {
						if _, dup := added.LoadOrStore(fmt.Sprint(i%2, blobID), true); dup {
							errs <- fmt.Errorf("blob %d stored twice", i)
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		return <-errs
	})
	if err != nil {
		t.Fatal(err)
	}
	if stats.BlobsAdded != uint64(len(blobs)) {
		t.Fatalf("%d blobs added, want %d", stats.BlobsAdded, len(blobs))
	}
	r2 := repotest.Reopen(t, be)
	for i, b := range blobs {
		got, err := r2.LoadBlob(ctx, pack.BlobType(i%2), r2.BlobID(b), nil)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("blob %d: %v", i, err)
		}
	}
	packs, _ := r2.ListPacks(ctx)
	for p, size := range packs {
		hdr, _ := pack.ReadHeader(ctx, be, r2.Key(), p, size)
		if len(hdr) > 1 && size > int64(r2.Config().PackSize)+64<<10 {
			t.Errorf("pack %s of %d blobs is %d bytes, over the %d-byte pack size", p.Short(), len(hdr), size, r2.Config().PackSize)
		}
	}
	res, err := check.Run(ctx, r2, check.Options{ReadData: true})
	if err != nil || !res.OK() || len(res.Notes) > 0 {
		t.Fatalf("check: %v %v %v", err, res.Errors, res.Notes)
	}
}
