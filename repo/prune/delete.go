package prune

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/index"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/storage"
)

// Repack copies the used blobs of the packs chosen for repacking into new packs, through a writer session
// that stores index files for them, and then adds the old packs to the delete set. It changes nothing
// readers see: every blob is afterwards in two packs. The caller holds a shared prune lock.
func (p *Plan) Repack(ctx context.Context) error {
	if len(p.repack) == 0 {
		return nil
	}
	stats, err := p.r.WithWriter(ctx, p.opts.Writer, func(ctx context.Context, w *repo.Writer) error {
		var plain []byte
		for _, packID := range p.repack {
			data, err := storage.ReadAll(ctx, p.r.Backend(), pack.Name(packID))
			if err != nil {
				return fmt.Errorf("repack: read pack %s: %w", packID.Short(), err)
			}
			for _, b := range p.packBlobs[packID] {
				if p.used[blobKey{b.Type, b.ID}] != packID {
					continue
				}
				if int64(b.Offset)+int64(b.Length) > int64(len(data)) {
					return fmt.Errorf("repack: pack %s is truncated: %w (run straddle repo check)", packID.Short(), repo.ErrCorrupt)
				}
				plain, err = p.r.OpenBlob(plain[:0], data[b.Offset:b.Offset+b.Length], b)
				if err == nil {
					err = p.r.VerifyBlobID(plain, b.ID)
				}
				if err != nil {
					return fmt.Errorf("repack: pack %s: %w (run straddle repo check)", packID.Short(), err)
				}
				if err := w.CopyBlob(ctx, b.Type, b.ID, plain); err != nil {
					return fmt.Errorf("repack: %w", err)
				}
				p.res.BlobsRepacked++
			}
		}
		return nil
	})
	p.res.BytesRepacked += int64(stats.BytesStored)
	if err != nil {
		return err
	}
	for _, packID := range p.repack {
		p.del[packID] = reasonRepacked
	}
	p.res.PacksRepacked = len(p.repack)
	return nil
}

// Delete removes the delete set; the caller holds the exclusive prune lock, so no backup runs and every
// backup that ran since planning has saved its snapshot and index files. It takes time in proportion to what
// changed since planning and to the garbage: (a) it keeps packs that snapshots saved since planning came to
// use, (b) it writes one index file replacing every index file that lists a pack to delete, (c) deletes the
// replaced index files, and (d) deletes the packs. After each step the repository is correct.
func (p *Plan) Delete(ctx context.Context) error {
	start := p.r.Now()
	defer func() { p.res.ExclusiveSeconds = p.r.Now().Sub(start).Seconds() }()
	if err := p.loadNewIndexFiles(ctx); err != nil {
		return err
	}
	if err := p.keepWhatNewSnapshotsUse(ctx); err != nil {
		return err
	}
	replaced, err := p.replaceIndexFiles(ctx)
	if err != nil {
		return err
	}
	// Leftovers of an interrupted prune first: their replacement is stored, and may be among replaced.
	for _, f := range append(slices.Clone(p.superseded), replaced...) {
		if err := p.r.Backend().Delete(ctx, "index/"+f.String()); err != nil {
			return fmt.Errorf("prune: delete index file %s: %w", f.Short(), err)
		}
		p.res.IndexFilesDeleted++
	}
	packs := slices.SortedFunc(maps.Keys(p.del), id.Compare)
	for _, packID := range packs {
		if err := p.r.Backend().Delete(ctx, pack.Name(packID)); err != nil {
			return fmt.Errorf("prune: delete pack %s: %w", packID.Short(), err)
		}
		p.res.PacksDeleted++
		p.res.BytesFreed += p.stored[packID]
	}
	return nil
}

// loadNewIndexFiles reads the index files stored since planning (by backups, and by Repack), so the trees of
// new snapshots load and copies of garbage blobs in new packs count.
func (p *Plan) loadNewIndexFiles(ctx context.Context) error {
	names, err := listIndexFiles(ctx, p.r)
	if err != nil {
		return err
	}
	for _, n := range names {
		if _, known := p.files[n]; known || slices.Contains(p.superseded, n) {
			continue
		}
		f, err := p.r.LoadIndexFile(ctx, n)
		if err != nil {
			return fmt.Errorf("prune: %w", err)
		}
		p.addFile(n, f)
		for _, pb := range f.Packs {
			p.r.Index().AddPack(pb.ID, pb.Blobs)
			switch why, going := p.del[pb.ID]; {
			case going && why == reasonUnindexed:
				// A backup running during planning had stored the pack but not yet its index.
				delete(p.del, pb.ID)
				p.res.PacksKept++
				p.markElsewhere(pb.Blobs)
			case !going:
				p.markElsewhere(pb.Blobs)
			}
		}
	}
	return nil
}

// keepWhatNewSnapshotsUse walks the trees of snapshots saved since planning that planning did not visit. A
// backup that ran meanwhile deduplicated against the index it loaded, which may have held blobs of packs
// planned for deletion; a pack holding such a blob, stored in no pack that stays, is kept.
func (p *Plan) keepWhatNewSnapshotsUse(ctx context.Context) error {
	snaps, err := p.r.ListSnapshots(ctx)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	for _, s := range snaps {
		if p.snapshots[s.ID] {
			continue
		}
		err := p.walk(ctx, s.ID, s.Tree, func(k blobKey) {
			if p.elsewhere[k] {
				return
			}
			for _, packID := range p.garbage[k] {
				if _, going := p.del[packID]; going {
					delete(p.del, packID)
					p.res.PacksKept++
					p.markElsewhere(p.packBlobs[packID])
				}
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// replaceIndexFiles stores one index file with everything the files listing a pack to delete list, minus
// those packs, superseding them; it returns the replaced files. Readers ignore superseded files, so the
// packs may go as soon as it is stored.
func (p *Plan) replaceIndexFiles(ctx context.Context) ([]id.ID, error) {
	var replaced []id.ID
	for f, packs := range p.files {
		if slices.ContainsFunc(packs, func(q id.ID) bool { _, going := p.del[q]; return going }) {
			replaced = append(replaced, f)
		}
	}
	if len(replaced) == 0 {
		return nil, nil
	}
	slices.SortFunc(replaced, id.Compare)
	repl := &index.File{Supersedes: replaced}
	for _, f := range replaced {
		// Read again rather than rebuilt from packBlobs, which merges a pack listed by several files: index
		// files are immutable, so this is what planning read.
		old, err := p.r.LoadIndexFile(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		for _, pb := range old.Packs {
			if _, going := p.del[pb.ID]; !going {
				repl.Packs = append(repl.Packs, pb)
			}
		}
	}
	if len(repl.Packs) > 0 {
		if _, err := p.r.SaveIndexFile(ctx, repl); err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
		p.res.IndexFilesReplaced = len(replaced)
	}
	return replaced, nil
}

func listIndexFiles(ctx context.Context, r *repo.Repository) ([]id.ID, error) {
	var ids []id.ID
	err := r.Backend().List(ctx, "index/", func(fi storage.Info) error {
		if i, err := id.Parse(strings.TrimPrefix(fi.Name, "index/")); err == nil {
			ids = append(ids, i)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prune: list index files: %w", err)
	}
	return ids, nil
}
