package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/straddle-io/straddle/repo/crypto"
)

type repoKeyPasswdOptions struct {
	*repoFlags
	newPassword newPasswordFlags
}

func newRepoKeyPasswdCmd(f *repoFlags) *cobra.Command {
	o := &repoKeyPasswdOptions{repoFlags: f}
	cmd := &cobra.Command{
		Use:   "passwd",
		Short: "Change the password: add a key for the new one, then remove the key in use",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.newPassword.useTerminal(cmd.ErrOrStderr())
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.newPassword.register(cmd)
	return cmd
}

func (o *repoKeyPasswdOptions) run(ctx context.Context, out io.Writer) error {
	r, err := o.open(ctx, false)
	if err != nil {
		return err
	}
	pw, err := o.newPassword.read()
	if err != nil {
		return err
	}
	old := r.KeyID()
	kid, err := r.ChangePassword(ctx, pw, crypto.DefaultKDF)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "changed the password: key %s replaces key %s\n", kid.Short(), old.Short())
	return nil
}
