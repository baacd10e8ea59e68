// Package restore writes a snapshot back into a directory: plan by pack so each pack is read once, write
// blobs at their offsets in parallel, then set metadata. It never writes outside the target.
package restore

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/straddle-io/straddle/repo"
	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/pack"
	"github.com/straddle-io/straddle/repo/tree"
)

// entry is one node to restore at a slash-separated path relative to the target.
type entry struct {
	rel  string
	node *tree.Node
}

// file is a regular file whose content arrives blob by blob, possibly from several packs at once.
type file struct {
	entry
	remaining atomic.Int64 // blob writes still to come
	mu        sync.Mutex
	fd        int     // open for writing while fd >= 0 (0 is a valid descriptor when stdin is closed)
	dir       *dirRef // held while the file is open
}

// use is one place a blob's plaintext goes.
type use struct {
	file   *file
	offset int64
}

// blobPlan is one blob to read from a pack and the places it goes.
type blobPlan struct {
	blob pack.Blob
	uses []use
}

// plan is everything a restore does, in order.
type plan struct {
	dirs      []entry // parents before children
	files     []*file
	hardlinks []link
	symlinks  []entry
	specials  []entry
	packs     map[id.ID][]*blobPlan
	bytes     uint64
}

type link struct {
	rel, target string
}

type inodeKey struct{ dev, ino uint64 }

// makePlan walks the snapshot's trees and resolves every content blob in the index.
func makePlan(ctx context.Context, r *repo.Repository, root id.ID, includes []string) (*plan, error) {
	p := &plan{packs: map[id.ID][]*blobPlan{}}
	blobs := map[id.ID]*blobPlan{}
	firstLink := map[inodeKey]string{}
	var walk func(treeID id.ID, dir string) error
	walk = func(treeID id.ID, dir string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		t, err := r.LoadTree(ctx, treeID)
		if err != nil {
			return fmt.Errorf("load directory %q: %w", "/"+dir, err)
		}
		for i := range t.Nodes {
			n := &t.Nodes[i]
			// Trees were validated when decoded; check again here, where a bad name would do harm.
			if err := tree.ValidName(n.Name); err != nil {
				return fmt.Errorf("directory %q: %w", "/"+dir, err)
			}
			rel := path.Join(dir, n.Name)
			sel := selected(rel, includes)
			if sel == skip {
				continue
			}
			if n.Type == tree.Dir {
				// Ancestors of included paths are made too, with their own metadata.
				p.dirs = append(p.dirs, entry{rel, n})
				if err := walk(n.Subtree, rel); err != nil {
					return err
				}
				continue
			}
			if sel != include {
				continue
			}
			switch n.Type {
			case tree.File:
				if n.Links > 1 {
					k := inodeKey{n.Device, n.Inode}
					if first, ok := firstLink[k]; ok {
						p.hardlinks = append(p.hardlinks, link{rel: rel, target: first})
						continue
					}
					firstLink[k] = rel
				}
				if err := p.addFile(r, &file{entry: entry{rel, n}, fd: -1}, blobs); err != nil {
					return err
				}
			case tree.Symlink:
				p.symlinks = append(p.symlinks, entry{rel, n})
			default:
				p.specials = append(p.specials, entry{rel, n})
			}
		}
		return nil
	}
	if err := walk(root, ""); err != nil {
		return nil, err
	}
	for _, bps := range p.packs {
		slices.SortFunc(bps, func(a, b *blobPlan) int { return int(a.blob.Offset) - int(b.blob.Offset) })
	}
	return p, nil
}

func (p *plan) addFile(r *repo.Repository, f *file, blobs map[id.ID]*blobPlan) error {
	var off int64
	for _, c := range f.node.Content {
		bp, ok := blobs[c]
		if !ok {
			e, found := r.Index().Lookup(pack.DataBlob, c)
			if !found {
				return fmt.Errorf("restore %s: data blob %s is missing from the repository: %w", f.rel, c.Short(), repo.ErrNotFound)
			}
			bp = &blobPlan{blob: pack.Blob{Type: pack.DataBlob, ID: c, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength}}
			blobs[c] = bp
			p.packs[e.Pack] = append(p.packs[e.Pack], bp)
		}
		bp.uses = append(bp.uses, use{file: f, offset: off})
		off += int64(bp.blob.RawLength)
	}
	if uint64(off) != f.node.Size {
		return fmt.Errorf("restore %s: content adds up to %d bytes, the file had %d: %w", f.rel, off, f.node.Size, repo.ErrCorrupt)
	}
	f.remaining.Store(int64(len(f.node.Content)))
	p.files = append(p.files, f)
	p.bytes += f.node.Size
	return nil
}

type selection int

const (
	skip    selection = iota
	include           // at or below an included path
	descend           // an ancestor of an included path: walk it, restore only what is included
)

func selected(rel string, includes []string) selection {
	if len(includes) == 0 {
		return include
	}
	result := skip
	for _, inc := range includes {
		switch {
		case rel == inc || strings.HasPrefix(rel, inc+"/"):
			return include
		case strings.HasPrefix(inc, rel+"/"):
			result = descend
		}
	}
	return result
}

// CleanInclude turns a user's include path into the slash-separated relative form plans use.
func CleanInclude(p string) (string, error) {
	c := path.Clean("/" + p)[1:]
	if c == "" {
		return "", fmt.Errorf("include path %q names the whole snapshot; leave it out instead", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("include path %q must not contain \"..\"", p)
		}
	}
	return c, nil
}
