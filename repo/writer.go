package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/storage"
)

// WriterOptions tunes a writer session; zero values mean defaults.
type WriterOptions struct {
	// Uploaders is how many packs are uploaded at once (default 2). Each holds one pack in memory.
	Uploaders int
	// CheckpointInterval is how often the packs stored so far are written to an index file, so a killed
	// writer's retry reuses them (default 5 minutes).
	CheckpointInterval time.Duration
}

// WriterStats counts what a session stored.
type WriterStats struct {
	BlobsAdded  uint64 // blobs new to the repository
	BytesAdded  uint64 // their plaintext bytes, before compression
	BytesStored uint64 // bytes of packs written, headers included
	Packs       uint64
	IndexFiles  uint64
}

// Writer stores new blobs into packs during one session. Blobs already in the repository are skipped.
// Create one with Repository.WithWriter; its methods are safe for concurrent use.
type Writer struct {
	r       *Repository
	uploads chan *pack.Writer
	done    <-chan struct{} // closed when the session fails

	mu        sync.Mutex
	packers   [pack.NumBlobTypes]*pack.Writer
	inflight  [pack.NumBlobTypes]map[id.ID]struct{} // accepted, not yet in the index
	unindexed []index.PackBlobs                     // stored, not yet in an index file
	stats     WriterStats
}

// WithWriter runs fn with a writer, then stores the last partial packs and an index file for every pack the
// session stored, even when fn or an upload failed, so a retry reuses what reached storage. A snapshot that
// references the session's blobs may be saved only after WithWriter returned without error.
func (r *Repository) WithWriter(ctx context.Context, opts WriterOptions, fn func(ctx context.Context, w *Writer) error) (WriterStats, error) {
	if opts.Uploaders <= 0 {
		opts.Uploaders = 2
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = 5 * time.Minute
	}
	g, gctx := errgroup.WithContext(ctx)
	w := &Writer{r: r, uploads: make(chan *pack.Writer), done: gctx.Done()}
	for t := range w.inflight {
		w.inflight[t] = map[id.ID]struct{}{}
	}
	for range opts.Uploaders {
		g.Go(func() error {
			for p := range w.uploads {
				if err := w.upload(gctx, p); err != nil {
					return err
				}
			}
			return nil
		})
	}
	stopTicker := make(chan struct{})
	g.Go(func() error { return w.checkpointEvery(gctx, opts.CheckpointInterval, stopTicker) })

	err := fn(gctx, w)
	if err == nil {
		err = w.flushPacks(gctx)
	}
	close(w.uploads)
	close(stopTicker)
	err = errors.Join(err, g.Wait())
	// Even a failed or cancelled session indexes what it stored; give that a bounded time of its own.
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if ierr := w.Checkpoint(ictx); ierr != nil {
		err = errors.Join(err, ierr)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats, err
}

// SaveBlob stores data as a blob of type t unless the repository already has it, and returns its ID and
// whether it was new.
func (w *Writer) SaveBlob(ctx context.Context, t pack.BlobType, data []byte) (id.ID, bool, error) {
	blobID := w.r.key.BlobID(data)
	added, err := w.SaveBlobWithID(ctx, t, blobID, data)
	return blobID, added, err
}

// SaveBlobWithID is SaveBlob for a caller that has already computed the blob's ID with Repository.BlobID.
func (w *Writer) SaveBlobWithID(ctx context.Context, t pack.BlobType, blobID id.ID, data []byte) (bool, error) {
	if t >= pack.NumBlobTypes {
		return false, fmt.Errorf("invalid blob type %d", t)
	}
	if len(data) > pack.MaxBlobSize {
		return false, fmt.Errorf("blob of %d bytes exceeds the %d-byte limit", len(data), pack.MaxBlobSize)
	}
	w.mu.Lock()
	_, pending := w.inflight[t][blobID]
	if pending || w.r.idx.Has(t, blobID) {
		w.mu.Unlock()
		return false, nil
	}
	w.inflight[t][blobID] = struct{}{}
	w.mu.Unlock()

	// Compress and seal outside the lock, so every core works; only the append is serialised.
	zbuf := getScratch(len(data))
	defer putScratch(zbuf)
	plain := data
	if z, ok := w.r.codec.Compress((*zbuf)[:0], data); ok {
		plain = z
		*zbuf = z
	}
	sbuf := getScratch(len(plain) + crypto.Overhead)
	defer putScratch(sbuf)
	sealed := w.r.key.Seal((*sbuf)[:0], plain, blobID[:])
	*sbuf = sealed

	w.mu.Lock()
	p := w.packers[t]
	if p == nil {
		p = pack.NewWriter(getPackBuf(w.r.cfg.PackSize))
		w.packers[t] = p
	}
	p.Add(t, blobID, sealed, len(data))
	w.stats.BlobsAdded++
	w.stats.BytesAdded += uint64(len(data))
	if p.Size() < w.r.cfg.PackSize {
		w.mu.Unlock()
		return true, nil
	}
	w.packers[t] = nil
	w.mu.Unlock()
	return true, w.send(ctx, p)
}

// BlobID computes the ID a plaintext would be stored under.
func (r *Repository) BlobID(data []byte) id.ID { return r.key.BlobID(data) }

func (w *Writer) send(ctx context.Context, p *pack.Writer) error {
	select {
	case w.uploads <- p:
		return nil
	case <-w.done:
		return errors.New("writer session failed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Writer) flushPacks(ctx context.Context) error {
	for t := range w.packers {
		w.mu.Lock()
		p := w.packers[t]
		w.packers[t] = nil
		w.mu.Unlock()
		if p != nil && p.Count() > 0 {
			if err := w.send(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *Writer) upload(ctx context.Context, p *pack.Writer) error {
	data, packID, blobs := p.Finish(w.r.key)
	defer putPackBuf(data)
	if err := w.r.be.Put(ctx, pack.Name(packID), bytes.NewReader(data), int64(len(data))); err != nil {
		return fmt.Errorf("upload pack %s: %w", packID.Short(), err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// Index before forgetting the in-flight mark, so a concurrent SaveBlob always sees the blob somewhere.
	w.r.idx.AddPack(packID, blobs)
	for _, b := range blobs {
		delete(w.inflight[b.Type], b.ID)
	}
	w.unindexed = append(w.unindexed, index.PackBlobs{ID: packID, Blobs: blobs})
	w.stats.Packs++
	w.stats.BytesStored += uint64(len(data))
	return nil
}

func (w *Writer) checkpointEvery(ctx context.Context, every time.Duration, stop <-chan struct{}) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return nil
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := w.Checkpoint(ctx); err != nil {
				return err
			}
		}
	}
}

// Checkpoint writes an index file for the packs stored since the last one.
func (w *Writer) Checkpoint(ctx context.Context) error {
	w.mu.Lock()
	packs := w.unindexed
	w.unindexed = nil
	w.mu.Unlock()
	if len(packs) == 0 {
		return nil
	}
	if _, err := w.r.SaveIndexFile(ctx, &index.File{Packs: packs}); err != nil {
		w.mu.Lock()
		w.unindexed = append(packs, w.unindexed...)
		w.mu.Unlock()
		return err
	}
	w.mu.Lock()
	w.stats.IndexFiles++
	w.mu.Unlock()
	return nil
}

// SaveIndexFile seals and stores an index file; its name is the hash of the stored bytes.
func (r *Repository) SaveIndexFile(ctx context.Context, f *index.File) (id.ID, error) {
	sealed := r.key.Seal(nil, f.Encode(), index.AD)
	fileID := id.Hash(sealed)
	if err := storage.PutBytes(ctx, r.be, "index/"+fileID.String(), sealed); err != nil {
		return id.Null, fmt.Errorf("save index %s: %w", fileID.Short(), err)
	}
	return fileID, nil
}

var packBufs sync.Pool

func getPackBuf(packSize int) []byte {
	if b, ok := packBufs.Get().(*[]byte); ok && cap(*b) >= packSize {
		return (*b)[:0]
	}
	// Room for a full pack plus one maximal chunk and its header, so appends rarely reallocate.
	return make([]byte, 0, packSize+MaxChunkSize+(1<<20))
}

func putPackBuf(b []byte) {
	b = b[:0]
	packBufs.Put(&b)
}
