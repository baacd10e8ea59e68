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
	packers   [pack.NumBlobTypes]*openPack
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
	if gerr := g.Wait(); gerr != nil {
		// fn failing because an upload failed says nothing more than the upload's error: report that alone.
		if (errors.Is(err, context.Canceled) || errors.Is(err, errSessionFailed)) && ctx.Err() == nil {
			err = nil
		}
		err = errors.Join(err, gerr)
	}
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
	return w.saveBlob(ctx, t, blobID, data, false)
}

// CopyBlob stores a blob even though the index already has it: prune copies the used blobs out of packs it
// is about to delete. The caller has verified that blobID is data's ID.
func (w *Writer) CopyBlob(ctx context.Context, t pack.BlobType, blobID id.ID, data []byte) error {
	_, err := w.saveBlob(ctx, t, blobID, data, true)
	return err
}

func (w *Writer) saveBlob(ctx context.Context, t pack.BlobType, blobID id.ID, data []byte, copying bool) (bool, error) {
	if t >= pack.NumBlobTypes {
		return false, fmt.Errorf("invalid blob type %d", t)
	}
	if len(data) > pack.MaxBlobSize {
		return false, fmt.Errorf("blob of %d bytes exceeds the %d-byte limit", len(data), pack.MaxBlobSize)
	}
	w.mu.Lock()
	_, pending := w.inflight[t][blobID]
	if pending || (!copying && w.r.idx.Has(t, blobID)) {
		w.mu.Unlock()
		return false, nil
	}
	w.inflight[t][blobID] = struct{}{}
	w.mu.Unlock()

	// Compress outside the lock, so every core works.
	zbuf := getScratch(w.r.codec.Bound(len(data)))
	defer putScratch(zbuf)
	plain := data
	if z, ok := w.r.codec.Compress((*zbuf)[:0], data); ok {
		plain = z
		*zbuf = z
	}
	sealedLen := len(plain) + crypto.Overhead
	w.mu.Lock()
	op, region, ready := w.reserve(t, blobID, len(data), sealedLen)
	w.stats.BlobsAdded++
	w.stats.BytesAdded += uint64(len(data))
	w.mu.Unlock()
	if ready != nil {
		if err := w.send(ctx, ready); err != nil {
			return false, err
		}
	}
	// Sealing happens outside the lock, straight into the blob's place in the pack: no copy, no contention.
	w.r.key.Seal(region[:0], plain, blobID[:])
	w.mu.Lock()
	op.pending--
	done := op.full && op.pending == 0
	w.mu.Unlock()
	if done {
		return true, w.send(ctx, op.w)
	}
	return true, nil
}

// openPack is a pack being filled; blobs reserved in it may still be being sealed. The last one sealed into
// a full pack sends it.
type openPack struct {
	w       *pack.Writer
	pending int
	full    bool
}

// reserve finds room for a sealed blob; w.mu must be held. A pack the blob did not fit in, and that no one
// is sealing into any more, is returned as ready to send.
func (w *Writer) reserve(t pack.BlobType, blobID id.ID, rawLen, sealedLen int) (op *openPack, region []byte, ready *pack.Writer) {
	op = w.packers[t]
	if op != nil && op.w.Size()+sealedLen > w.r.cfg.PackSize {
		// The blob would overflow the pack: close it first, so pack buffers need no room beyond the pack
		// size. Whoever seals its last blob sends it, or it goes now if no one is sealing.
		op.full = true
		if op.pending == 0 {
			ready = op.w
		}
		op = nil
	}
	if op == nil {
		op = &openPack{w: pack.NewWriter(getPackBuf(w.r.cfg.PackSize, sealedLen))}
		w.packers[t] = op
	}
	// The buffer has room: it was checked above, or it is new and sized for this blob.
	region, _ = op.w.Reserve(t, blobID, rawLen, sealedLen)
	op.pending++
	return op, region, ready
}

// BlobID computes the ID a plaintext would be stored under.
func (r *Repository) BlobID(data []byte) id.ID { return r.key.BlobID(data) }

// errSessionFailed is what a blocked send returns once an upload has failed the session.
var errSessionFailed = errors.New("writer session failed")

func (w *Writer) send(ctx context.Context, p *pack.Writer) error {
	select {
	case w.uploads <- p:
		return nil
	case <-w.done:
		return errSessionFailed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *Writer) flushPacks(ctx context.Context) error {
	for t := range w.packers {
		// fn has returned, so nothing is being sealed into the last packs.
		w.mu.Lock()
		op := w.packers[t]
		w.packers[t] = nil
		w.mu.Unlock()
		if op != nil && op.w.Count() > 0 {
			if err := w.send(ctx, op.w); err != nil {
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

// getPackBuf returns a buffer with room for a full pack and its header, or for a single blob of blobLen bytes
// (a huge directory's tree) if that is larger.
func getPackBuf(packSize, blobLen int) []byte {
	want := max(packSize, blobLen) + 1<<20
	if b, ok := packBufs.Get().(*[]byte); ok && cap(*b) >= want {
		return (*b)[:0]
	}
	return make([]byte, 0, want)
}

func putPackBuf(b []byte) {
	b = b[:0]
	packBufs.Put(&b)
}
