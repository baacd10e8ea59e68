package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

type repoKeyRemoveOptions struct {
	*repoFlags
}

func newRepoKeyRemoveCmd(f *repoFlags) *cobra.Command {
	o := &repoKeyRemoveOptions{repoFlags: f}
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a key by ID or unique prefix (never the one in use, never the last)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
}

func (o *repoKeyRemoveOptions) run(ctx context.Context, ref string, out io.Writer) error {
	r, err := o.open(ctx, false)
	if err != nil {
		return err
	}
	kid, err := r.FindKey(ctx, ref)
	if err != nil {
		return err
	}
	if err := r.RemoveKey(ctx, kid); err != nil {
		return err
	}
	fmt.Fprintf(out, "removed key %s\n", kid.Short())
	return nil
}
