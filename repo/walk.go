package repo

import (
	"context"
	"path"

	"github.com/straddle-io/straddle/repo/id"
	"github.com/straddle-io/straddle/repo/tree"
)

// WalkTrees visits the tree treeID, found at directory dir, and every tree below it, depth first. Trees in
// seen are skipped with their subtrees (their content is identical wherever they appear), and every visited
// tree is added to seen, so walks sharing seen load each tree once. visit gets the loaded tree, or the error
// loading it (the walk then does not descend there); an error visit returns stops the walk.
func (r *Repository) WalkTrees(ctx context.Context, treeID id.ID, dir string, seen map[id.ID]bool,
	visit func(dir string, treeID id.ID, t *tree.Tree, err error) error) error {
	if seen[treeID] {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	seen[treeID] = true
	t, err := r.LoadTree(ctx, treeID)
	if verr := visit(dir, treeID, t, err); verr != nil || err != nil {
		return verr
	}
	for _, n := range t.Nodes {
		if n.Subtree.IsNull() {
			continue
		}
		if err := r.WalkTrees(ctx, n.Subtree, path.Join(dir, n.Name), seen, visit); err != nil {
			return err
		}
	}
	return nil
}
