package prune

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/tree"
)

// Why a pack is in the delete set.
const (
	reasonUnused    = "unused"    // no snapshot uses any of its blobs
	reasonRepacked  = "repacked"  // its used blobs were copied into new packs
	reasonUnindexed = "unindexed" // no index lists it (a killed backup's, or an interrupted prune's)
)

type blobKey struct {
	t  pack.BlobType
	id id.ID
}

// Plan is what planning found: which packs to delete or repack, and what deletion needs to stay correct
// against backups that ran meanwhile. Its steps run in order: NewPlan and Repack under a shared lock, Delete
// under an exclusive one.
type Plan struct {
	r    *repo.Repository
	opts Options
	res  Result

	snapshots map[id.ID]bool // the snapshots planning saw (S0)
	visited   map[id.ID]bool // trees whose blobs are all in used
	// used maps every blob a snapshot references to the pack whose copy stays (see classify).
	used map[blobKey]id.ID
	// files lists, per live index file, the packs it lists; superseded are stored files some live file
	// replaces (left by an interrupted prune).
	files      map[id.ID][]id.ID
	superseded []id.ID
	packBlobs  map[id.ID][]pack.Blob
	stored     map[id.ID]int64
	unused     map[id.ID]int64 // per indexed pack, bytes of blobs no snapshot uses
	del        map[id.ID]string
	repack     []id.ID
	// garbage maps every blob of a pack to delete or repack to those packs; elsewhere marks the ones also
	// stored in a pack that stays, so deleting their copies loses nothing.
	garbage   map[blobKey][]id.ID
	elsewhere map[blobKey]bool
}

// NewPlan lists the snapshots, loads the index, walks every snapshot's trees and chooses what to delete and
// what to repack. It reads the whole index and every tree once; the caller holds a shared prune lock.
func NewPlan(ctx context.Context, r *repo.Repository, opts Options) (*Plan, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Plan{r: r, opts: opts, res: Result{DryRun: opts.DryRun}, snapshots: map[id.ID]bool{}, visited: map[id.ID]bool{},
		used: map[blobKey]id.ID{}, files: map[id.ID][]id.ID{}, packBlobs: map[id.ID][]pack.Blob{}, unused: map[id.ID]int64{},
		del: map[id.ID]string{}, garbage: map[blobKey][]id.ID{}, elsewhere: map[blobKey]bool{}}
	// Snapshots first: a snapshot saved after this listing is handled by Delete; one saved before it has
	// its index files stored already, so loading the index next sees every blob it needs.
	snaps, err := r.ListSnapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if err := p.loadIndex(ctx); err != nil {
		return nil, err
	}
	for _, s := range snaps {
		p.snapshots[s.ID] = true
		if err := p.walk(ctx, s.ID, s.Tree, nil); err != nil {
			return nil, err
		}
	}
	p.res.Snapshots = len(snaps)
	if p.stored, err = r.ListPacks(ctx); err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if err := p.classify(); err != nil {
		return nil, err
	}
	p.findGarbage()
	return p, nil
}

// loadIndex reads every index file, keeps what each lists, and makes the repository use the index of the
// live (not superseded) files.
func (p *Plan) loadIndex(ctx context.Context) error {
	names, err := listIndexFiles(ctx, p.r)
	if err != nil {
		return err
	}
	files, err := p.r.LoadIndexFiles(ctx, names)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	superseded := index.Superseded(files)
	b := index.NewBuilder()
	var live []id.ID
	for i, f := range files {
		if _, ok := superseded[names[i]]; ok {
			p.superseded = append(p.superseded, names[i])
			continue
		}
		b.AddFile(f)
		live = append(live, names[i])
		p.addFile(names[i], f)
	}
	p.r.UseIndex(b.Build(), live)
	return nil
}

func (p *Plan) addFile(name id.ID, f *index.File) {
	packs := make([]id.ID, 0, len(f.Packs))
	for _, pb := range f.Packs {
		packs = append(packs, pb.ID)
		p.packBlobs[pb.ID] = append(p.packBlobs[pb.ID], pb.Blobs...)
	}
	p.files[name] = packs
}

// walk visits the trees of one snapshot not visited before and calls fn (when set) for every blob they
// reference; planning records them all as used. A tree that cannot be read stops the prune: what it
// references is unknown, so nothing may be deleted.
func (p *Plan) walk(ctx context.Context, snapID, root id.ID, fn func(blobKey)) error {
	if fn == nil {
		fn = func(k blobKey) {
			if _, ok := p.used[k]; !ok {
				p.used[k] = id.Null
			}
		}
	}
	return p.r.WalkTrees(ctx, root, "/", p.visited, func(dir string, treeID id.ID, t *tree.Tree, err error) error {
		if err != nil {
			return fmt.Errorf("prune stops: snapshot %s, directory %s: %w (run straddle repo check)", snapID.Short(), dir, err)
		}
		fn(blobKey{pack.TreeBlob, treeID})
		for _, n := range t.Nodes {
			for _, b := range n.Content {
				fn(blobKey{pack.DataBlob, b})
			}
		}
		return nil
	})
}

// classify measures each pack's unused bytes and fills the delete and repack sets. Of a blob stored in
// several packs (a backup killed before its index was written and retried, an interrupted prune's repack),
// the copy in the pack with the most used bytes stays, so the choice is the same at every run and the
// others count as unused.
func (p *Plan) classify() error {
	usedAll := map[id.ID]int64{}
	for packID, blobs := range p.packBlobs {
		for _, b := range blobs {
			if _, ok := p.used[blobKey{b.Type, b.ID}]; ok {
				usedAll[packID] += int64(b.Length)
			}
		}
	}
	for packID, blobs := range p.packBlobs {
		for _, b := range blobs {
			k := blobKey{b.Type, b.ID}
			cur, ok := p.used[k]
			if !ok || cur == packID {
				continue
			}
			if _, stored := p.stored[packID]; !stored {
				continue
			}
			if _, curStored := p.stored[cur]; cur.IsNull() || !curStored || usedAll[packID] > usedAll[cur] ||
				(usedAll[packID] == usedAll[cur] && id.Compare(packID, cur) < 0) {
				p.used[k] = packID
			}
		}
	}
	for k, packID := range p.used {
		if packID.IsNull() {
			return fmt.Errorf("prune stops: %s blob %s is used by a snapshot but stored in no pack (run straddle repo check)", k.t, k.id.Short())
		}
	}
	for packID, blobs := range p.packBlobs {
		size, ok := p.stored[packID]
		var usedBytes, unusedBytes int64
		for _, b := range blobs {
			if p.used[blobKey{b.Type, b.ID}] == packID {
				usedBytes += int64(b.Length)
			} else {
				unusedBytes += int64(b.Length)
			}
		}
		// The header is overhead of the used blobs, not garbage.
		p.unused[packID] = unusedBytes
		switch {
		case !ok:
			// Listed by an index but missing (check reports it); no snapshot's copy is there, by the choice
			// above, so dropping it from the index loses nothing.
			p.del[packID] = reasonUnused
		case usedBytes == 0:
			p.del[packID] = reasonUnused
		case float64(unusedBytes) >= p.opts.RepackThreshold*float64(size):
			p.repack = append(p.repack, packID)
		}
	}
	slices.SortFunc(p.repack, id.Compare)
	for packID := range p.stored {
		if _, ok := p.packBlobs[packID]; !ok {
			// Listed in no live index: a killed backup's, whose index never came, or one an interrupted
			// prune dropped from the index. Delete checks again that no index lists it by then.
			p.del[packID] = reasonUnindexed
			p.res.UnindexedPacks++
		}
	}
	p.res.Packs = len(p.stored)
	return nil
}

// findGarbage records the blobs of packs to delete or repack, and which of them a pack that stays also holds.
func (p *Plan) findGarbage() {
	going := maps.Clone(p.del)
	for _, packID := range p.repack {
		going[packID] = reasonRepacked
	}
	for packID := range going {
		for _, b := range p.packBlobs[packID] {
			k := blobKey{b.Type, b.ID}
			p.garbage[k] = append(p.garbage[k], packID)
		}
	}
	for packID, blobs := range p.packBlobs {
		if _, ok := going[packID]; !ok {
			p.markElsewhere(blobs)
		}
	}
}

func (p *Plan) markElsewhere(blobs []pack.Blob) {
	for _, b := range blobs {
		k := blobKey{b.Type, b.ID}
		if _, ok := p.garbage[k]; ok {
			p.elsewhere[k] = true
		}
	}
}

// Result reports the plan and what was done so far.
func (p *Plan) Result() *Result {
	res := p.res
	if p.opts.DryRun {
		res.PacksRepacked = len(p.repack)
		res.PacksDeleted = len(p.del) + len(p.repack)
		for packID := range p.del {
			res.BytesFreed += p.stored[packID]
		}
		for _, packID := range p.repack {
			res.BytesFreed += p.stored[packID]
		}
	}
	// In a dry run the repacked packs are not in the delete set yet, though they would go.
	repacked := map[id.ID]bool{}
	if p.opts.DryRun {
		for _, packID := range p.repack {
			repacked[packID] = true
		}
	}
	res.BytesUnused = 0
	for packID, n := range p.unused {
		if _, going := p.del[packID]; !going && !repacked[packID] {
			res.BytesUnused += n
		}
	}
	return &res
}
