// Package check verifies a repository: that every index file, snapshot and tree decodes, that every blob a
// snapshot needs is indexed in a stored pack, and, when asked, that every byte of the packs authenticates.
package check

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/storage"
	"github.com/straddle-io/straddle/repo/tree"
)

// Options choose how deep a check goes.
type Options struct {
	// ReadData downloads and verifies every pack.
	ReadData bool
	// ReadDataSubset, between 0 and 1, verifies a random fraction of the packs instead.
	ReadDataSubset float64
	// Progress, when set, is called after each pack read.
	Progress func(done, total int)
}

// Problem is one thing found wrong, naming the object it concerns.
type Problem struct {
	Object  string `json:"object"`
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Object + ": " + p.Message }

// Result is what a check found. Errors make a repository unhealthy; notes (such as packs no index lists,
// left by an interrupted backup and removed by prune) do not.
type Result struct {
	Errors      []Problem `json:"errors"`
	Notes       []Problem `json:"notes"`
	Snapshots   int       `json:"snapshots"`
	IndexFiles  int       `json:"index_files"`
	Packs       int       `json:"packs"`
	Trees       int       `json:"trees"`
	PacksRead   int       `json:"packs_read"`
	BytesRead   int64     `json:"bytes_read"`
	BlobsVerify int       `json:"blobs_verified"`
}

// OK reports whether the check found no errors.
func (r *Result) OK() bool { return len(r.Errors) == 0 }

type checker struct {
	r   *repo.Repository
	mu  sync.Mutex
	res Result
	// packBlobs lists, per pack, the blobs the index files say it holds.
	packBlobs map[id.ID][]pack.Blob
	stored    map[id.ID]int64
	idx       *index.Index
}

func (c *checker) fail(object, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Errors = append(c.res.Errors, Problem{Object: object, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) note(object, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.res.Notes = append(c.res.Notes, Problem{Object: object, Message: fmt.Sprintf(format, args...)})
}

// Run checks r. It returns an error only when the check itself cannot proceed (storage unreachable);
// problems in the repository are in the Result.
func Run(ctx context.Context, r *repo.Repository, opts Options) (*Result, error) {
	if opts.ReadDataSubset < 0 || opts.ReadDataSubset > 1 {
		return nil, fmt.Errorf("read-data subset %v outside 0..1", opts.ReadDataSubset)
	}
	c := &checker{r: r, packBlobs: map[id.ID][]pack.Blob{}}
	if err := c.checkIndex(ctx); err != nil {
		return nil, err
	}
	if err := c.checkPacks(ctx); err != nil {
		return nil, err
	}
	if !opts.ReadData {
		// Reading the whole packs checks their headers too.
		if err := c.checkHeaders(ctx); err != nil {
			return nil, err
		}
	}
	if err := c.checkSnapshots(ctx); err != nil {
		return nil, err
	}
	if opts.ReadData || opts.ReadDataSubset > 0 {
		if err := c.readData(ctx, opts); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(c.res.Errors, func(a, b Problem) int { return compareProblems(a, b) })
	slices.SortFunc(c.res.Notes, func(a, b Problem) int { return compareProblems(a, b) })
	return &c.res, nil
}

func compareProblems(a, b Problem) int {
	if a.Object != b.Object {
		if a.Object < b.Object {
			return -1
		}
		return 1
	}
	if a.Message < b.Message {
		return -1
	}
	if a.Message > b.Message {
		return 1
	}
	return 0
}

func (c *checker) checkIndex(ctx context.Context) error {
	var names []id.ID
	err := c.r.Backend().List(ctx, "index/", func(fi storage.Info) error {
		i, err := id.Parse(path.Base(fi.Name))
		if err != nil {
			c.note(fi.Name, "not an index file name; ignored")
			return nil
		}
		names = append(names, i)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list index files: %w", err)
	}
	c.res.IndexFiles = len(names)
	files := make([]*index.File, 0, len(names))
	loaded := make([]id.ID, 0, len(names))
	for _, n := range names {
		f, err := c.r.LoadIndexFile(ctx, n)
		if err != nil {
			if errors.Is(err, repo.ErrCorrupt) {
				c.fail("index/"+n.String(), "%v", err)
				continue
			}
			return err
		}
		files = append(files, f)
		loaded = append(loaded, n)
	}
	// Readers ignore superseded files (prune replaced them and may have deleted their packs), so check does.
	superseded := index.Superseded(files)
	b := index.NewBuilder()
	var live []id.ID
	for i, f := range files {
		if _, ok := superseded[loaded[i]]; ok {
			c.note("index/"+loaded[i].String(), "superseded by a newer index file (left by an interrupted prune; prune removes it)")
			continue
		}
		b.AddFile(f)
		live = append(live, loaded[i])
		for _, p := range f.Packs {
			c.packBlobs[p.ID] = append(c.packBlobs[p.ID], p.Blobs...)
		}
	}
	c.idx = b.Build()
	// Trees are read through the repository, so it must see what the check sees.
	c.r.UseIndex(c.idx, live)
	return nil
}

func (c *checker) checkPacks(ctx context.Context) error {
	stored, err := c.r.ListPacks(ctx)
	if err != nil {
		return err
	}
	c.stored = stored
	c.res.Packs = len(stored)
	for p, blobs := range c.packBlobs {
		size, ok := stored[p]
		if !ok {
			c.fail(pack.Name(p), "pack is missing from storage; %d indexed blobs are lost", len(blobs))
			continue
		}
		for _, b := range blobs {
			if int64(b.Offset)+int64(b.Length) > size {
				c.fail(pack.Name(p), "pack of %d bytes is truncated: blob %s ends at %d", size, b.ID.Short(), int64(b.Offset)+int64(b.Length))
				break
			}
		}
	}
	for p := range stored {
		if _, ok := c.packBlobs[p]; !ok {
			c.note(pack.Name(p), "pack is in no index (left by an interrupted backup; prune removes it)")
		}
	}
	return nil
}

// checkHeaders reads each indexed pack's header (a ranged read of its tail) and compares it with the index.
func (c *checker) checkHeaders(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2 * runtime.GOMAXPROCS(0))
	for p, indexed := range c.packBlobs {
		size, ok := c.stored[p]
		if !ok {
			continue
		}
		g.Go(func() error {
			blobs, err := pack.ReadHeader(gctx, c.r.Backend(), c.r.Key(), p, size)
			if errors.Is(err, pack.ErrCorrupt) || errors.Is(err, storage.ErrTruncated) || errors.Is(err, storage.ErrNotFound) {
				c.fail(pack.Name(p), "%v", err)
				return nil
			}
			if err != nil {
				return err
			}
			c.compareHeader(p, blobs, indexed)
			return nil
		})
	}
	return g.Wait()
}

func (c *checker) compareHeader(p id.ID, header, indexed []pack.Blob) {
	inHeader := make(map[id.ID]pack.Blob, len(header))
	for _, b := range header {
		inHeader[b.ID] = b
	}
	for _, b := range indexed {
		if hb, ok := inHeader[b.ID]; !ok || hb != b {
			c.fail(pack.Name(p), "blob %s: the index and the pack header disagree", b.ID.Short())
		}
	}
}

func (c *checker) checkSnapshots(ctx context.Context) error {
	snaps, err := c.r.ListSnapshots(ctx)
	if err != nil {
		// One damaged snapshot must not hide the others: check them one by one.
		return c.checkSnapshotsOneByOne(ctx)
	}
	c.res.Snapshots = len(snaps)
	seen := map[id.ID]bool{}
	for _, s := range snaps {
		c.checkTree(ctx, "snapshot "+s.ID.Short(), s.Tree, "/", seen)
	}
	return nil
}

func (c *checker) checkSnapshotsOneByOne(ctx context.Context) error {
	var ids []id.ID
	if err := c.r.Backend().List(ctx, "snapshots/", func(fi storage.Info) error {
		if i, err := id.Parse(path.Base(fi.Name)); err == nil {
			ids = append(ids, i)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	c.res.Snapshots = len(ids)
	seen := map[id.ID]bool{}
	for _, sid := range ids {
		s, err := c.r.LoadSnapshot(ctx, sid)
		if err != nil {
			c.fail("snapshots/"+sid.String(), "%v", err)
			continue
		}
		c.checkTree(ctx, "snapshot "+s.ID.Short(), s.Tree, "/", seen)
	}
	return nil
}

// checkTree walks a tree once (shared subtrees are checked once) and reports every blob it cannot reach.
func (c *checker) checkTree(ctx context.Context, snap string, treeID id.ID, dir string, seen map[id.ID]bool) {
	// The walk stops early only when ctx ends, which Run reports through its callers' next storage call.
	_ = c.r.WalkTrees(ctx, treeID, dir, seen, func(dir string, treeID id.ID, t *tree.Tree, err error) error {
		c.mu.Lock()
		c.res.Trees++
		c.mu.Unlock()
		if err != nil {
			if why := c.unreachable(pack.TreeBlob, treeID); why != "" {
				c.fail(snap, "directory %s: %s", dir, why)
			} else {
				c.fail(snap, "directory %s: %v", dir, err)
			}
			return nil
		}
		for _, n := range t.Nodes {
			for _, blobID := range n.Content {
				if why := c.unreachable(pack.DataBlob, blobID); why != "" {
					c.fail(snap, "file %s: %s", path.Join(dir, n.Name), why)
					break
				}
			}
		}
		return nil
	})
}

// unreachable says why a blob cannot be read, or returns "" when it is indexed in a stored pack.
func (c *checker) unreachable(t pack.BlobType, blobID id.ID) string {
	e, ok := c.idx.Lookup(t, blobID)
	if !ok {
		return fmt.Sprintf("%s blob %s is in no index", t, blobID.Short())
	}
	if _, ok := c.stored[e.Pack]; !ok {
		return fmt.Sprintf("%s blob %s is in pack %s, which is missing", t, blobID.Short(), e.Pack.Short())
	}
	return ""
}

// readData downloads packs, checks each hashes to its name, that its header agrees with the index, and that
// every blob authenticates, decompresses and hashes to its ID.
func (c *checker) readData(ctx context.Context, opts Options) error {
	var packs []id.ID
	for p := range c.stored {
		packs = append(packs, p)
	}
	slices.SortFunc(packs, id.Compare)
	if !opts.ReadData {
		rand.Shuffle(len(packs), func(i, j int) { packs[i], packs[j] = packs[j], packs[i] })
		n := int(float64(len(packs))*opts.ReadDataSubset + 0.999999)
		packs = packs[:min(n, len(packs))]
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0) + 2)
	done := 0
	for _, p := range packs {
		g.Go(func() error {
			err := c.readPack(gctx, p)
			c.mu.Lock()
			done++
			c.res.PacksRead++
			d := done
			c.mu.Unlock()
			if opts.Progress != nil {
				opts.Progress(d, len(packs))
			}
			return err
		})
	}
	return g.Wait()
}

func (c *checker) readPack(ctx context.Context, packID id.ID) error {
	name := pack.Name(packID)
	data, err := storage.ReadAll(ctx, c.r.Backend(), name)
	if errors.Is(err, storage.ErrNotFound) {
		c.fail(name, "pack disappeared during the check")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pack %s: %w", packID.Short(), err)
	}
	c.mu.Lock()
	c.res.BytesRead += int64(len(data))
	c.mu.Unlock()
	if id.Hash(data) != packID {
		c.fail(name, "content does not match its name (%d bytes altered or truncated)", len(data))
		// Go on: the header and blobs say which part is damaged.
	}
	blobs, _, err := pack.ParseHeader(c.r.Key(), data, int64(len(data)))
	if err != nil {
		c.fail(name, "%v", err)
		return nil
	}
	c.compareHeader(packID, blobs, c.packBlobs[packID])
	verified := 0
	var plain []byte
	for _, b := range blobs {
		plain, err = c.r.OpenBlob(plain[:0], data[b.Offset:b.Offset+b.Length], b)
		if err == nil {
			err = c.r.VerifyBlobID(plain, b.ID)
		}
		if err != nil {
			c.fail(name, "%v", err)
			continue
		}
		verified++
	}
	c.mu.Lock()
	c.res.BlobsVerify += verified
	c.mu.Unlock()
	return nil
}
