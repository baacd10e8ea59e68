package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo/crypto"
)

type repoKeyAddOptions struct {
	*repoFlags
	newPassword newPasswordFlags
}

func newRepoKeyAddCmd(f *repoFlags) *cobra.Command {
	o := &repoKeyAddOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "add",
		Short: "Add a key: a second password that opens the repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.newPassword.useTerminal(cmd.ErrOrStderr())
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.newPassword.register(cmd)
	return cmd
}

func (o *repoKeyAddOptions) run(ctx context.Context, out io.Writer) error {
	r, err := o.open(ctx, false)
	if err != nil {
		return err
	}
	pw, err := o.newPassword.read()
	if err != nil {
		return err
	}
	kid, err := r.AddKey(ctx, pw, crypto.DefaultKDF)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "added key %s\n", kid.Short())
	return nil
}
