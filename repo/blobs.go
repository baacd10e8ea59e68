package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/straddle-io/straddle/repo/crypto"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/tree"
)

// LoadIndex reads every index file into a fresh in-memory index, or a paged one when it would exceed the
// budget set by SetIndexPaging. Files are added as they arrive, so loading holds at most a few decoded files
// besides the index itself.
func (r *Repository) LoadIndex(ctx context.Context) error {
	names, err := r.listIDs(ctx, "index/")
	if err != nil {
		return err
	}
	x, live, superseded, err := r.buildIndex(ctx, names, nil)
	if err != nil {
		return err
	}
	// A file some other file supersedes is being replaced by prune: the packs it lists may be deleted
	// already, so its entries must never be used. That is rare (prune's short window), so the index is
	// built again without such files rather than every file held until all are read.
	if slices.ContainsFunc(live, func(n id.ID) bool { _, ok := superseded[n]; return ok }) {
		_ = x.Close()
		if x, live, _, err = r.buildIndex(ctx, names, superseded); err != nil {
			return err
		}
	}
	r.UseIndex(x, live)
	return nil
}

// buildIndex reads the named index files except skip, several at once, into a builder, and returns the
// index, the files it holds and the files they supersede.
func (r *Repository) buildIndex(ctx context.Context, names []id.ID, skip map[id.ID]struct{}) (*index.Index, []id.ID, map[id.ID]struct{}, error) {
	b := index.NewPagedBuilder(r.paging)
	var (
		mu         sync.Mutex
		live       []id.ID
		superseded = map[id.ID]struct{}{}
	)
	g, gctx := errgroup.WithContext(ctx)
	// Index files are small and many: overlap the round trips to object storage.
	g.SetLimit(8)
	for _, n := range names {
		if _, ok := skip[n]; ok {
			continue
		}
		g.Go(func() error {
			f, err := r.LoadIndexFile(gctx, n)
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			b.AddFile(f)
			live = append(live, n)
			for _, s := range f.Supersedes {
				superseded[s] = struct{}{}
			}
			return nil
		})
	}
	err := g.Wait()
	x, ferr := b.Finish()
	if err == nil {
		err = ferr
	}
	if err != nil {
		if x != nil {
			_ = x.Close()
		}
		return nil, nil, nil, err
	}
	slices.SortFunc(live, id.Compare)
	return x, live, superseded, nil
}

// SetIndexPaging bounds the memory of the index LoadIndex builds: beyond p.Budget bytes of entries, it is
// paged to sorted files in p.Dir. A zero Paging keeps the whole index in memory.
func (r *Repository) SetIndexPaging(p index.Paging) { r.paging = p }

// IndexBudget is the index's share of a process's memory limit: a quarter, leaving the rest to the backup
// or restore pipeline (which peaks near 250 MiB) and the runtime. Zero (no limit) gives zero (no paging).
func IndexBudget(memoryLimit int64) int64 {
	if memoryLimit <= 0 {
		return 0
	}
	// At least one byte: a limit always bounds the index, even one too small to hold any of it.
	return max(1, memoryLimit/4)
}

// LoadIndexFiles reads the named index files, several at once, in the order named.
func (r *Repository) LoadIndexFiles(ctx context.Context, names []id.ID) ([]*index.File, error) {
	files := make([]*index.File, len(names))
	g, gctx := errgroup.WithContext(ctx)
	// Index files are small and many: overlap the round trips to object storage.
	g.SetLimit(8)
	for i, n := range names {
		g.Go(func() error {
			f, err := r.LoadIndexFile(gctx, n)
			files[i] = f
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return files, nil
}

// UseIndex replaces the in-memory index with one the caller built, such as check's, which skips damaged
// index files instead of failing.
func (r *Repository) UseIndex(idx *index.Index, files []id.ID) {
	if r.idx != nil && r.idx != idx {
		// A paged index's files go with it.
		_ = r.idx.Close()
	}
	r.idx = idx
	r.indexFiles = files
}

// IndexFiles lists the index files LoadIndex read.
func (r *Repository) IndexFiles() []id.ID { return r.indexFiles }

// LoadIndexFile reads, authenticates and decodes one index file.
func (r *Repository) LoadIndexFile(ctx context.Context, fileID id.ID) (*index.File, error) {
	name := "index/" + fileID.String()
	buf, err := storage.ReadAll(ctx, r.be, name)
	if err != nil {
		return nil, fmt.Errorf("load index %s: %w", fileID.Short(), err)
	}
	if id.Hash(buf) != fileID {
		return nil, fmt.Errorf("load index %s: content does not match its name: %w", fileID.Short(), ErrCorrupt)
	}
	plain, err := r.key.Open(nil, buf, index.AD)
	if err != nil {
		return nil, fmt.Errorf("load index %s: %w: %w", fileID.Short(), err, ErrCorrupt)
	}
	f, err := index.DecodeFile(plain)
	if err != nil {
		return nil, fmt.Errorf("load index %s: %w: %w", fileID.Short(), err, ErrCorrupt)
	}
	return f, nil
}

// listIDs lists the objects under a prefix whose names are IDs; anything else is ignored.
func (r *Repository) listIDs(ctx context.Context, prefix string) ([]id.ID, error) {
	var ids []id.ID
	err := r.be.List(ctx, prefix, func(fi storage.Info) error {
		base := fi.Name[strings.LastIndex(fi.Name, "/")+1:]
		if i, err := id.Parse(base); err == nil {
			ids = append(ids, i)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return ids, nil
}

// ListPacks returns every stored pack with its size.
func (r *Repository) ListPacks(ctx context.Context) (map[id.ID]int64, error) {
	packs := map[id.ID]int64{}
	err := r.be.List(ctx, "data/", func(fi storage.Info) error {
		if i, err := id.Parse(fi.Name[strings.LastIndex(fi.Name, "/")+1:]); err == nil {
			packs[i] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return packs, nil
}

// LoadBlob reads one blob with a ranged read, authenticates and decompresses it, appending to buf.
func (r *Repository) LoadBlob(ctx context.Context, t pack.BlobType, blobID id.ID, buf []byte) ([]byte, error) {
	e, ok := r.idx.Lookup(t, blobID)
	if !ok {
		return nil, fmt.Errorf("%s blob %s is not in the index: %w", t, blobID.Short(), ErrNotFound)
	}
	sealed, err := storage.ReadRange(ctx, r.be, pack.Name(e.Pack), int64(e.Offset), int64(e.Length))
	if errors.Is(err, storage.ErrTruncated) {
		err = fmt.Errorf("%w: %w", err, ErrCorrupt)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s blob %s from pack %s: %w", t, blobID.Short(), e.Pack.Short(), err)
	}
	return r.OpenBlob(buf, sealed, pack.Blob{Type: t, ID: blobID, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength})
}

// OpenBlob authenticates and decompresses a sealed blob read from a pack, appending the plaintext to buf.
func (r *Repository) OpenBlob(buf, sealed []byte, b pack.Blob) ([]byte, error) {
	if len(sealed) != int(b.Length) {
		return nil, fmt.Errorf("%s blob %s: got %d bytes, want %d: %w", b.Type, b.ID.Short(), len(sealed), b.Length, ErrCorrupt)
	}
	if !b.Compressed() {
		out, err := r.key.Open(buf, sealed, b.ID[:])
		if err != nil {
			return nil, fmt.Errorf("%s blob %s: %w: %w", b.Type, b.ID.Short(), err, ErrCorrupt)
		}
		return out, nil
	}
	zbuf := getScratch(len(sealed))
	defer putScratch(zbuf)
	z, err := r.key.Open((*zbuf)[:0], sealed, b.ID[:])
	if err != nil {
		return nil, fmt.Errorf("%s blob %s: %w: %w", b.Type, b.ID.Short(), err, ErrCorrupt)
	}
	*zbuf = z
	out, err := r.codec.Decompress(buf, z, int(b.RawLength))
	if err != nil {
		return nil, fmt.Errorf("%s blob %s: %v: %w", b.Type, b.ID.Short(), err, ErrCorrupt)
	}
	return out, nil
}

// VerifyBlobID recomputes a plaintext's keyed ID, the deepest check a reader can make.
func (r *Repository) VerifyBlobID(plain []byte, want id.ID) error {
	if got := r.key.BlobID(plain); got != want {
		return fmt.Errorf("blob %s holds data of blob %s: %w", want.Short(), got.Short(), ErrCorrupt)
	}
	return nil
}

// LoadTree reads and decodes a tree blob. The first tree read from a pack reads the whole pack, which later
// trees of the same pack are taken from (see TreeCacheBytes).
func (r *Repository) LoadTree(ctx context.Context, treeID id.ID) (*tree.Tree, error) {
	buf, err := r.loadTreeBlob(ctx, treeID)
	if err != nil {
		return nil, err
	}
	t, err := tree.Decode(buf)
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w: %w", treeID.Short(), err, ErrCorrupt)
	}
	return t, nil
}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<20); return &b }}

func getScratch(n int) *[]byte {
	b := scratchPool.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	return b
}

func putScratch(b *[]byte) {
	// Huge buffers (tree blobs of giant directories) are dropped rather than pinned in the pool.
	if cap(*b) <= MaxChunkSize+MaxChunkSize/64+crypto.Overhead+(64<<10) {
		*b = (*b)[:0]
		scratchPool.Put(b)
	}
}
